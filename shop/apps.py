from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import register
        from django.db.models.signals import post_delete, post_save

        from shop.checks import emails_deploy_check

        register(emails_deploy_check, deploy=True)

        from shop.catalogue.models import Product
        from shop.catalogue.selectors import products_cache_clear

        post_save.connect(products_cache_clear, sender=Product, dispatch_uid="products-cache")
        post_delete.connect(products_cache_clear, sender=Product, dispatch_uid="products-cache")
