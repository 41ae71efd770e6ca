from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from shop import checks  # noqa: F401 - registers the deploy checks
        from shop.catalogue.models import Product
        from shop.catalogue.selectors import products_cache_clear

        post_save.connect(products_cache_clear, sender=Product, dispatch_uid="products-cache")
        post_delete.connect(products_cache_clear, sender=Product, dispatch_uid="products-cache")
