from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path(settings.ADMIN_URL, admin.site.urls),
    path("", include("shop.urls")),
]

handler400 = "shop.errorviews.bad_request"
handler403 = "shop.errorviews.permission_denied"
handler404 = "shop.errorviews.page_not_found"
handler500 = "shop.errorviews.server_error"
