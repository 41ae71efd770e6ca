from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

from shop.orders.models import Order
from shop.web.overview import owner_overview


class ShopAdminSite(admin.AdminSite):
    """Django's admin with the owner's overview: staff only, like every admin page."""

    index_template = "shop/admin/index.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("overview/", self.admin_view(self.overview), name="overview"),
            *super().get_urls(),
        ]

    def overview(self, request: HttpRequest) -> TemplateResponse:
        # The figures are the orders' figures: staff who may not see orders do not see them.
        if not self.get_model_admin(Order).has_view_permission(request):
            raise PermissionDenied
        # A dashboard, like the index page: the whole width, no navigation sidebar.
        context = {**self.each_context(request), "is_nav_sidebar_enabled": False}
        return owner_overview(request, site_context=context)
