"""The shop's URLs plus /bench/floor: the cheapest view Django can serve with the same stack."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500
from config.urls import urlpatterns as shop_urls

FLOOR_BODY = b"ok\n"


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(FLOOR_BODY, content_type="text/plain")


urlpatterns = [path("bench/floor", floor, name="bench_floor"), *shop_urls]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
