"""The messages themselves: subject, plain text and HTML from templates, links made absolute."""

from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from shop.notifications.models import Notification
from shop.orders.links import ORDERS_LINK_LIFETIME, order_link_token, orders_link_token
from shop.orders.models import Order


def absolute_url(path: str) -> str:
    return settings.SHOP_BASE_URL + path


def order_link(order: Order) -> str:
    """The order page's link for anyone holding it (see shop.orders.links)."""
    query = urlencode({"token": order_link_token(reference=order.reference)})
    return absolute_url(reverse("shop:order", args=[order.reference]) + "?" + query)


def notification_message(notification: Notification) -> EmailMultiAlternatives:
    order = notification.order
    context = {
        "order": order,
        "refund": notification.refund,
        "dispute": notification.dispute,
        "lines": list(order.lines.all()),
        "order_url": order_link(order),
        "admin_url": absolute_url(reverse("admin:shop_order_change", args=[order.pk])),
        "shop_url": absolute_url(reverse("shop:storefront")),
    }
    return _message(
        f"shop/emails/{notification.kind}",
        context,
        to=notification.recipient,
        # The same id on every attempt and copy of one record: a mail system that received it
        # once can tell a repeat (a crash after the server accepted it) for what it is.
        message_id=f"<notification-{notification.pk}-{int(notification.created_at.timestamp())}"
        f"@{_domain()}>",
    )


def orders_link_message(email: str) -> EmailMultiAlternatives:
    """Find my orders: a link that shows this address's orders in whichever browser opens it."""
    query = urlencode({"token": orders_link_token(email=email)})
    context = {
        "link": absolute_url(reverse("shop:orders_find_open") + "?" + query),
        "hours": int(ORDERS_LINK_LIFETIME.total_seconds() // 3600),
    }
    return _message("shop/emails/orders_link", context, to=email)


def _message(
    template: str, context: dict[str, Any], *, to: str, message_id: str | None = None
) -> EmailMultiAlternatives:
    subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{template}.txt", context),
        to=[to],
        headers={"Message-ID": message_id} if message_id else None,
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message


def _domain() -> str:
    return urlsplit(settings.SHOP_BASE_URL).hostname or "localhost"
