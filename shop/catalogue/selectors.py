"""Reading the catalogue."""

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import QuerySet

from shop.catalogue.models import Product

PRODUCTS_CACHE_KEY = "shop:storefront-products"
PRODUCTS_CACHE_SECONDS = 60


@dataclass(frozen=True)
class ProductRow:
    """One product as the storefront shows it."""

    id: int
    name: str
    description: str
    unit_amount: int


@dataclass(frozen=True)
class Catalogue:
    products: list[ProductRow]
    # What the product list shows, as one value: the key of its cached markup.
    key: str


def products_for_sale() -> QuerySet[Product]:
    return Product.objects.filter(active=True)


def catalogue_for_storefront() -> Catalogue:
    """The products to show, cached for a minute (and dropped on any product edit in this
    process): checkout prices every cart from the database again, so a stale list can show an
    old price for a minute but never charge one."""
    catalogue: Catalogue | None = cache.get(PRODUCTS_CACHE_KEY)
    if catalogue is None:
        rows = [ProductRow(p.pk, p.name, p.description, p.unit_amount) for p in products_for_sale()]
        key = hashlib.sha256(repr(rows).encode()).hexdigest()
        catalogue = Catalogue(rows, key)
        cache.set(PRODUCTS_CACHE_KEY, catalogue, PRODUCTS_CACHE_SECONDS)
    return catalogue


def products_cache_clear(**kwargs: object) -> None:
    cache.delete(PRODUCTS_CACHE_KEY)
