"""Payment providers behind one small interface: Stripe, or the local demo when no key is set."""

from django.conf import settings

from shop.payments.types import PaymentGateway


def get_gateway() -> PaymentGateway:
    if settings.STRIPE_SECRET_KEY:
        from shop.payments.stripe_gateway import StripeGateway

        return StripeGateway.from_settings()
    from shop.payments.demo import DemoGateway

    return DemoGateway()


def demo_mode() -> bool:
    return not settings.STRIPE_SECRET_KEY
