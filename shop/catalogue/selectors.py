"""Reading the catalogue."""

from django.core.cache import cache
from django.db.models import QuerySet

from shop.catalogue.models import Product

PRODUCTS_CACHE_KEY = "shop:products-for-storefront"
PRODUCTS_CACHE_SECONDS = 60


def products_for_sale() -> QuerySet[Product]:
    return Product.objects.filter(active=True)


def products_for_storefront() -> list[Product]:
    """The products to show, cached for a minute (and dropped on any product edit in this
    process): checkout prices every cart from the database again, so a stale list can show an
    old price for a minute but never charge one."""
    products = cache.get(PRODUCTS_CACHE_KEY)
    if products is None:
        products = list(products_for_sale())
        cache.set(PRODUCTS_CACHE_KEY, products, PRODUCTS_CACHE_SECONDS)
    return products


def products_cache_clear(**kwargs: object) -> None:
    cache.delete(PRODUCTS_CACHE_KEY)
