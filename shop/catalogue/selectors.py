"""Reading the catalogue."""

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import QuerySet

from shop.catalogue.models import Product
from shop.compiled import CompiledQuery
from shop.orders.limits import MAX_QUANTITY

PRODUCTS_CACHE_KEY = "shop:storefront-products"
PRODUCTS_CACHE_SECONDS = 60
# With stock on sale the list is kept only briefly: every hold, release and sale drops it (in
# this process, and everywhere with a shared cache), and this bounds what another process
# without a shared cache, or a list read just before a change, can show.
LIMITED_STOCK_CACHE_SECONDS = 5
# "Only N left" from this many down.
FEW_LEFT = 5


@dataclass(frozen=True)
class ProductRow:
    """One product as the storefront shows it."""

    id: int
    name: str
    description: str
    unit_amount: int
    # What a cart may take: None for unlimited, at most MAX_QUANTITY (the page shows no more,
    # so a change above it changes nothing shown and keeps the cached markup).
    available: int | None = None

    @property
    def sold_out(self) -> bool:
        return self.available == 0

    @property
    def few_left(self) -> bool:
        return self.available is not None and 0 < self.available <= FEW_LEFT

    @property
    def max_quantity(self) -> int:
        return MAX_QUANTITY if self.available is None else self.available


@dataclass(frozen=True)
class Catalogue:
    products: list[ProductRow]
    # What the product list shows, as one value: the key of its cached markup.
    key: str

    @property
    def buyable(self) -> bool:
        return any(not product.sold_out for product in self.products)


def products_for_sale() -> QuerySet[Product]:
    return Product.objects.filter(active=True)


# Every Buy prices its cart from these (compiled once per process: the ORM's building of this
# one query cost more than running it, 0.24 against 0.10 ms on PostgreSQL).
PRODUCTS_FOR_SALE = CompiledQuery(products_for_sale)


def products_for_sale_list() -> list[Product]:
    """The products for sale, as `products_for_sale` orders them, read now."""
    return PRODUCTS_FOR_SALE.objects()


def catalogue_for_storefront() -> Catalogue:
    """The products to show, with what is available of each, in one query, then cached.

    For a minute while no product has limited stock (and dropped on any product edit in this
    process): checkout prices every cart from the database again, so a stale list can show an
    old price for a minute but never charge one. Availability is kept a few seconds at most
    (see LIMITED_STOCK_CACHE_SECONDS): checkout holds stock against the database, so a list a
    moment old can let a customer try for a unit just taken (and be told so), never sell it.
    """
    catalogue: Catalogue | None = cache.get(PRODUCTS_CACHE_KEY)
    if catalogue is None:
        rows = [
            ProductRow(
                p.pk,
                p.name,
                p.description,
                p.unit_amount,
                None if p.available is None else min(p.available, MAX_QUANTITY),
            )
            for p in products_for_sale_list()
        ]
        key = hashlib.sha256(repr(rows).encode()).hexdigest()
        catalogue = Catalogue(rows, key)
        limited = any(row.available is not None for row in rows)
        cache.set(
            PRODUCTS_CACHE_KEY,
            catalogue,
            LIMITED_STOCK_CACHE_SECONDS if limited else PRODUCTS_CACHE_SECONDS,
        )
    return catalogue


def products_cache_clear(**kwargs: object) -> None:
    cache.delete(PRODUCTS_CACHE_KEY)
