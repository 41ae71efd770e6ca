from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path(settings.ADMIN_URL, admin.site.urls),
    path("", include("shop.web.urls")),
]

handler400 = "shop.web.errorviews.bad_request"
handler403 = "shop.web.errorviews.permission_denied"
handler404 = "shop.web.errorviews.page_not_found"
handler500 = "shop.web.errorviews.server_error"
