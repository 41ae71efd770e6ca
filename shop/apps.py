from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from shop import checks  # noqa: F401 - registers the deploy checks
        from shop.catalogue.models import Product
        from shop.catalogue.selectors import products_cache_clear

        post_save.connect(products_cache_clear, sender=Product, dispatch_uid="products-cache")
        post_delete.connect(products_cache_clear, sender=Product, dispatch_uid="products-cache")


class ShopAdminConfig(admin_apps.AdminConfig):
    """Django's admin, on the shop's own site (it adds the owner's overview)."""

    # Not the default of this module: "shop" in INSTALLED_APPS still means ShopConfig.
    default = False
    default_site = "shop.web.admin_site.ShopAdminSite"
