"""Turning a cart into a Stripe Checkout Session, once per cart, whatever the customer clicks."""

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from shop.catalogue.models import StockMovement, StockMovementKind
from shop.catalogue.selectors import products_cache_clear
from shop.catalogue.stock import OutOfStock, StockLine, stock_hold, stock_shortages
from shop.compiled import CompiledQuery
from shop.errors import ShopError
from shop.orders.cart import PricedCart
from shop.orders.models import Order, OrderLine, OrderStatus
from shop.orders.services import order_apply_session, order_transition, orders_expire_overdue
from shop.payments import get_gateway
from shop.payments.types import (
    CheckoutLine,
    CheckoutRequest,
    PaymentError,
    PaymentGateway,
    SessionNotOpen,
)

logger = logging.getLogger(__name__)

# An open checkout this close to its end is not handed out again: the customer needs time to pay.
REUSE_MARGIN = timedelta(minutes=10)
IN_FLIGHT_WINDOW = timedelta(minutes=1)
STRIPE_DOWN_MESSAGE = (
    "We could not reach our payment provider, so no payment was started and no money was "
    "taken. Please try again in a minute."
)


def checkout_start(
    *, customer_key: str, cart: PricedCart, success_url: str, cancel_url: str
) -> str:
    """Return the URL to send the customer to for paying this cart.

    The same cart from the same browser gets the same open session (no second Stripe session);
    a different cart first closes the browser's previous session, so one customer never holds
    two payable sessions. The order is committed before Stripe is called, so a webhook can
    never arrive for an order we do not have.
    """
    gateway = get_gateway()
    opened = _open_order_for_cart(customer_key=customer_key, cart=cart, gateway=gateway)
    order = opened.order
    _close_released_checkouts(released=opened.released, gateway=gateway)
    if order.checkout_url:
        return order.checkout_url

    request = CheckoutRequest(
        order_reference=order.reference,
        currency=order.currency,
        lines=tuple(
            CheckoutLine(
                name=line.product_name, unit_amount=line.unit_amount, quantity=line.quantity
            )
            for line in opened.lines
        ),
        success_url=success_url,
        cancel_url=cancel_url,
        expires_at=order.checkout_expires_at,
        # Stable for this order: a retry, a double click or a second tab gets Stripe's stored
        # answer instead of a second session (so the lines must be the order's own, as stored).
        idempotency_key=f"checkout-session-{order.reference}",
    )
    try:
        session = gateway.create_checkout_session(request)
    except PaymentError:
        with transaction.atomic():
            current = Order.objects.select_for_update().get(pk=order.pk)
            if current.checkout_url:
                return current.checkout_url  # a concurrent request of this browser got through
            # Nobody ever saw a URL for this order, so nobody can pay it: close it for good.
            order_transition(order=current, to=OrderStatus.FAILED, cause="checkout_unavailable")
        logger.warning("order %s: checkout session could not be created", order.reference)
        raise ShopError(STRIPE_DOWN_MESSAGE, status=503) from None

    saved = Order.objects.filter(
        Q(checkout_session_id__isnull=True) | Q(checkout_session_id=session.id),
        pk=order.pk,
        status=OrderStatus.PENDING,
        released_at__isnull=True,
    ).update(checkout_session_id=session.id, checkout_url=session.url or "")
    if not saved:
        # Another tab replaced this cart while Stripe answered: close the session we got.
        _close_checkout(order=order, session_id=session.id, gateway=gateway)
        raise ShopError(
            "Your cart changed in another tab. Please check it and press Buy again.", status=409
        )
    logger.info("order %s: checkout session %s", order.reference, session.id)
    return session.url or ""


@dataclass(frozen=True)
class OpenedOrder:
    order: Order
    lines: list[OrderLine]
    # This browser's replaced orders still awaiting their session's end (see below).
    released: list[Order]


def _open_order_for_cart(
    *, customer_key: str, cart: PricedCart, gateway: PaymentGateway
) -> OpenedOrder:
    """The browser's open order for this cart, creating it (and releasing any other) if needed."""
    freed = False
    for _ in range(3):
        try:
            with transaction.atomic():
                return _open_order_for_cart_once(customer_key=customer_key, cart=cart)
        except IntegrityError:
            # A concurrent request of the same browser created its open order first; use it.
            continue
        except OutOfStock as short:
            # Rolled back: no order, nothing held, and Stripe not called.
            own = _held_by_browser(customer_key=customer_key, product_ids=short.wanted)
            if freed or not _free_stock_for(
                customer_key=customer_key, wanted=short.wanted, own=own, gateway=gateway
            ):
                raise _out_of_stock_error(wanted=short.wanted, own=own) from None
            freed = True
    raise ShopError("Too many checkouts at once from this browser. Please try again.", status=409)


# Every Buy reads the browser's pending orders this way (compiled once per process).
PENDING_ORDERS_LOCKED = CompiledQuery(
    lambda customer_key: (
        Order.objects.select_for_update()
        .filter(customer_key=customer_key, status=OrderStatus.PENDING)
        .order_by("id")
    ),
    "customer_key",
)


def _open_order_for_cart_once(*, customer_key: str, cart: PricedCart) -> OpenedOrder:
    now = timezone.now()
    # The open order and the released ones in one read; ids follow creation order.
    pending = PENDING_ORDERS_LOCKED.objects(customer_key=customer_key)
    released = [order for order in pending if order.released_at is not None]
    current = next((order for order in pending if order.released_at is None), None)
    if current is not None:
        # An order still without a URL is either being sent to Stripe right now (reuse it: the
        # idempotency key returns the same session) or was abandoned by a crash (replace it:
        # its expires_at may no longer be the 30 minutes ahead Stripe requires).
        in_flight = not current.checkout_url and current.created_at > now - IN_FLIGHT_WINDOW
        if (
            current.cart_key == cart.key
            and current.checkout_expires_at > now + REUSE_MARGIN
            and (current.checkout_url or in_flight)
        ):
            # An order with its URL needs no Stripe call, so no lines.
            lines = [] if current.checkout_url else list(current.lines.all())
            return OpenedOrder(current, lines, released)
        Order.objects.filter(pk=current.pk).update(released_at=now)
        current.released_at = now
        released.append(current)
    # Products of limited stock as read with the cart; one made limited since is counted when
    # the order is paid (see services._sale_lines).
    limited = [
        StockLine(line.product.pk, line.quantity)
        for line in cart.lines
        if line.product.stock is not None
    ]
    order = Order.objects.create(
        customer_key=customer_key,
        currency=cart.currency,
        amount_total=cart.total,
        cart_key=cart.key,
        checkout_expires_at=now + timedelta(minutes=settings.CHECKOUT_SESSION_MINUTES),
        holds_stock=bool(limited),
    )
    if limited:
        # Held in the transaction that creates the order: Stripe sessions live at least 30
        # minutes, and a unit held for one can be paid by no other until it is released.
        stock_hold(order_id=order.pk, lines=limited, cause="checkout")
    lines = OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=line.product,
            product_name=line.product.name,
            unit_amount=line.product.unit_amount,
            quantity=line.quantity,
        )
        for line in cart.lines
    )
    return OpenedOrder(order, lines, released)


def _free_stock_for(
    *, customer_key: str, wanted: dict[int, int], own: dict[int, int], gateway: PaymentGateway
) -> bool:
    """Before refusing a cart for want of stock, give back what no longer needs holding; True
    if anything was given back (the cart is then tried once more).

    Holds of checkouts that ended long ago but whose end never reached us (the shop's clock),
    and this browser's own: a customer who holds the last units and changes the cart must not
    be told they are gone. Its checkouts are closed only if that makes the new cart fit.
    """
    freed = bool(orders_expire_overdue(product_ids=wanted))
    if not own or stock_shortages(wanted, held_by_asker=own):
        return freed
    with transaction.atomic():
        pending = list(
            Order.objects.select_for_update()
            .filter(customer_key=customer_key, status=OrderStatus.PENDING)
            .order_by("id")
        )
        Order.objects.filter(pk__in=[o.pk for o in pending], released_at__isnull=True).update(
            released_at=timezone.now()
        )
    _close_released_checkouts(released=pending, gateway=gateway)
    return True


def _held_by_browser(*, customer_key: str, product_ids: Collection[int]) -> dict[int, int]:
    """Units of these products this browser's pending orders hold."""
    return dict(
        StockMovement.objects.filter(
            order__customer_key=customer_key,
            order__status=OrderStatus.PENDING,
            kind=StockMovementKind.HOLD,
            product_id__in=product_ids,
        )
        .values("product_id")
        .annotate(total=Sum("quantity"))
        .values_list("product_id", "total")
    )


def _out_of_stock_error(*, wanted: dict[int, int], own: dict[int, int]) -> ShopError:
    # The storefront shown with this message must show the stock as it is now.
    products_cache_clear()
    shortages = stock_shortages(wanted, held_by_asker=own)
    if not shortages:
        return ShopError(
            "What is in stock changed while you were buying. Please check and press Buy again.",
            status=409,
        )
    left = "; ".join(
        f"{s.name}: sold out" if s.available == 0 else f"{s.name}: only {s.available} left"
        for s in shortages
    )
    return ShopError(
        f"Not enough in stock ({left}). Lower the quantity and press Buy again; "
        "nothing was reserved or charged.",
        status=409,
    )


def _close_released_checkouts(*, released: list[Order], gateway: PaymentGateway) -> None:
    """Expire the sessions of this browser's replaced carts before it may pay another one."""
    for order in released:
        if order.checkout_session_id:
            _close_checkout(order=order, session_id=order.checkout_session_id, gateway=gateway)
        else:
            # No session was ever saved, so its URL never reached anyone: nothing can pay it.
            order_transition(order=order, to=OrderStatus.EXPIRED, cause="cart_replaced")


def _close_checkout(*, order: Order, session_id: str, gateway: PaymentGateway) -> None:
    try:
        session = gateway.expire_checkout_session(session_id)
    except SessionNotOpen:
        # Already complete (paid!) or expired: record what Stripe says, never lose a payment.
        try:
            session = gateway.retrieve_checkout_session(session_id)
        except PaymentError:
            raise ShopError(STRIPE_DOWN_MESSAGE, status=503) from None
        if session.status == "open":
            # Refused, yet still payable: a second payable session must not be opened.
            raise ShopError(STRIPE_DOWN_MESSAGE, status=503) from None
    except PaymentError:
        # The old session may still be payable: refuse to open a second one.
        raise ShopError(STRIPE_DOWN_MESSAGE, status=503) from None
    order_apply_session(session=session, cause="cart_replaced")


def checkout_confirm(*, customer_key: str, session_id: str) -> Order | None:
    """The success page: ask the provider about this browser's session and apply what it says.

    Stripe recommends fulfilling here as well as from the webhook; both use the same function.
    Sessions of other browsers are not looked up at all, and the provider is asked only while
    the order is pending: a settled order is shown from the database, so reloading the page
    cannot spend the account's API rate limit.
    """
    order = Order.objects.filter(checkout_session_id=session_id, customer_key=customer_key).first()
    if order is None or order.status != OrderStatus.PENDING:
        return order
    try:
        session = get_gateway().retrieve_checkout_session(session_id)
    except PaymentError:
        # The webhook (or reconcile_payments) will bring the news; show what we know now.
        return order
    order_apply_session(session=session, cause="success_page")
    order.refresh_from_db()
    return order


def checkout_pay_on_our_page(*, customer_key: str, session_id: str, email: str) -> Order:
    """Pay on a provider's page that is the shop's own (the demo): the provider answers what
    its session is after the payment, applied by the same fulfilment as a real payment."""
    order = Order.objects.filter(checkout_session_id=session_id, customer_key=customer_key).first()
    if order is None:
        raise ShopError("That checkout is not one of this browser's orders.", status=404)
    try:
        session = get_gateway().pay_checkout_session(session_id, email=email)
    except PaymentError:
        raise ShopError("That checkout can no longer be paid.", status=409) from None
    order_apply_session(session=session, cause="demo_payment")
    order.refresh_from_db()
    return order
