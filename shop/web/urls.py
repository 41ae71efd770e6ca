from django.urls import path

from shop.web import views

app_name = "shop"

urlpatterns = [
    path("", views.storefront, name="storefront"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/success/", views.checkout_success, name="checkout_success"),
    path("demo/checkout/<str:session_id>/", views.demo_checkout, name="demo_checkout"),
    path("orders/find/", views.orders_find, name="orders_find"),
    path("orders/find/sent/", views.orders_find_sent, name="orders_find_sent"),
    path("orders/find/open/", views.orders_find_open, name="orders_find_open"),
    path("orders/<str:reference>/", views.order_page, name="order"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/worker", views.healthz_worker, name="healthz_worker"),
]
