"""Deploy checks (`manage.py check --deploy`) for what would make a production shop unsafe."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def payments_check(**kwargs: Any) -> list[Error | Warning]:
    if settings.STRIPE_SECRET_KEY:
        if not settings.STRIPE_WEBHOOK_SECRETS:
            return [
                Error(
                    "STRIPE_WEBHOOK_SECRET is not set: every webhook is refused, so payments "
                    "are confirmed only by the success page and reconcile_payments.",
                    id="shop.E002",
                )
            ]
        return []
    if not settings.SHOP_DEMO_PAYMENTS:
        return [
            Error(
                "STRIPE_SECRET_KEY is not set and demo payments were not asked for.",
                hint="Set STRIPE_SECRET_KEY, or SHOP_DEMO_PAYMENTS=true for a demo.",
                id="shop.E001",
            )
        ]
    return [
        Warning(
            "Demo payments are on (SHOP_DEMO_PAYMENTS): anyone can mark an order paid without "
            "paying. For demos and load tests only.",
            id="shop.W001",
        )
    ]


@register(Tags.security, deploy=True)
def shared_cache_check(**kwargs: Any) -> list[Warning]:
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith("LocMemCache"):
        return [
            Warning(
                "No shared cache (REDIS_URL is empty): rate limits and refused-webhook counts "
                "are kept per worker process, so with N workers a client gets N times the limit.",
                hint="Set REDIS_URL when running more than one worker or server.",
                id="shop.W002",
            )
        ]
    return []
