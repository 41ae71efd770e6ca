from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path

from shop.catalogue.models import Product, StockMovement
from shop.notifications.models import Notification
from shop.notifications.services import notification_resend
from shop.orders.models import Order, OrderLine, OrderTransition
from shop.payments.models import KIND_CHOICES, WebhookDelivery, WebhookEvent
from shop.payments.webhooks import webhook_event_replay
from shop.refunds.admin import DisputeInline, RefundInline, refund_view
from shop.results import Kind
from shop.templatetags.money import cents


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "unit_amount", "stock", "held", "available", "position", "active"]
    list_editable = ["position", "active"]
    fields = [
        "name",
        "description",
        "unit_amount",
        "stock",
        "sold",
        "held",
        "available",
        "position",
        "active",
    ]
    readonly_fields = ["sold", "held", "available"]

    @admin.display(description="available")
    def available(self, obj: Product) -> str:
        return "unlimited" if obj.available is None else str(obj.available)

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        if change:
            # Checkouts hold and sell units while the form is open: write only what the owner
            # changed, never the held and sold counts the page was drawn with.
            obj.save(update_fields=form.changed_data)
        else:
            super().save_model(request, obj, form, change)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = readonly_fields = ("product_name", "unit_amount", "quantity")


class OrderTransitionInline(ReadOnlyInline):
    model = OrderTransition
    fields = readonly_fields = ("created_at", "from_status", "to_status", "cause", "event_id")


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = readonly_fields = (
        "kind",
        "recipient",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
        "resend",
    )
    verbose_name_plural = "emails"
    # Its own page has the Resend action.
    show_change_link = True


class StockMovementInline(ReadOnlyInline):
    model = StockMovement
    fields = readonly_fields = ("created_at", "product", "kind", "quantity", "cause", "event_id")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "reference",
        "status",
        "amount_total",
        "refunded",
        "currency",
        "disputed",
        "needs_review",
        "created_at",
        "paid_at",
    ]
    list_filter = ["status", "needs_review", "disputed", "created_at"]
    search_fields = ["reference", "checkout_session_id", "payment_intent_id", "email"]
    date_hierarchy = "created_at"
    inlines = [
        OrderLineInline,
        OrderTransitionInline,
        StockMovementInline,
        RefundInline,
        DisputeInline,
        NotificationInline,
    ]
    change_form_template = "admin/shop/order/change_form.html"
    # Money and Stripe facts only change through the payment code, never by hand.
    readonly_fields = [
        "reference",
        "customer_key",
        "status",
        "currency",
        "amount_total",
        "cart_key",
        "checkout_session_id",
        "checkout_url",
        "checkout_expires_at",
        "released_at",
        "payment_intent_id",
        "email",
        "refunded",
        "disputed",
        "created_at",
        "updated_at",
        "paid_at",
    ]
    fields = [*readonly_fields[:3], "needs_review", "review_reason", *readonly_fields[3:]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Refunded", ordering="amount_refunded")
    def refunded(self, order: Order) -> str:
        if not order.amount_refunded:
            return ""
        amount = cents(order.amount_refunded, order.currency)
        return f"Partially refunded {amount}" if order.partially_refunded else f"All, {amount}"

    def get_urls(self) -> list[URLPattern]:
        refund = path(
            "<path:object_id>/refund/",
            self.admin_site.admin_view(partial(refund_view, self)),
            name="shop_order_refund",
        )
        return [refund, *super().get_urls()]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["order", "kind", "recipient", "status", "attempts", "created_at", "sent_at"]
    list_filter = ["status", "kind", "resend", "created_at"]
    search_fields = ["order__reference", "recipient"]
    list_select_related = ["order"]
    readonly_fields = [
        "order",
        "kind",
        "recipient",
        "status",
        "resend",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
    ]
    actions = ["resend_copy"]

    @admin.action(description="Resend: send a new copy of the selected emails")
    def resend_copy(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        for notification in queryset:
            copy = notification_resend(notification=notification)
            self.message_user(
                request,
                f"{notification.get_kind_display()} for order {notification.order}: "
                f"a new copy to {copy.recipient} is on its way.",
                messages.SUCCESS,
            )


@admin.register(StockMovement)
class StockMovementAdmin(admin.ModelAdmin):
    """Every unit held, released and sold, by product and order: the story behind the counts."""

    list_display = ["created_at", "product", "kind", "quantity", "order", "cause", "event_id"]
    list_filter = ["product", "kind", "cause"]
    search_fields = ["order__reference", "event_id"]
    list_select_related = ["product", "order"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = [
        "event_id",
        "type",
        "received_at",
        "processed_at",
        "kind",
        "outcome",
        "attempts",
    ]
    list_filter = ["type", "kind", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["event_id"]
    readonly_fields = [
        "event_id",
        "type",
        "payload",
        "received_at",
        "processed_at",
        "kind",
        "outcome",
        "error",
        "attempts",
    ]
    actions = ["replay"]

    @admin.action(description="Process selected events again (already processed ones are skipped)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        for record in queryset:
            result = webhook_event_replay(record=record)
            level = messages.SUCCESS if result.kind.settled else messages.ERROR
            self.message_user(request, f"{record.event_id}: {result}", level)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class DeliveryStateFilter(admin.SimpleListFilter):
    """The kinds a delivery can end with, and the one state it has no kind for: waiting (being
    applied in its request, or queued for the worker)."""

    title = "state"
    parameter_name = "state"
    WAITING = "waiting"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # QUEUED is an answer to Stripe, never a stored state: a queued delivery is waiting.
        return [(self.WAITING, "waiting")] + [
            (value, label) for value, label in KIND_CHOICES if value != Kind.QUEUED
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == self.WAITING:
            return queryset.filter(kind="", signature_valid=True)
        return queryset.filter(kind=value) if value else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "event_type",
        "event_id",
        "signature_valid",
        "state",
        "outcome",
    ]
    list_filter = ["signature_valid", DeliveryStateFilter, "event_type"]
    search_fields = ["event_id"]
    readonly_fields = [
        "received_at",
        "remote_addr",
        "headers",
        "body",
        "body_size",
        "signature_valid",
        "event_id",
        "event_type",
        "kind",
        "outcome",
        "error",
    ]

    @admin.display(description="state", ordering="kind")
    def state(self, obj: WebhookDelivery) -> str:
        if obj.kind:
            return obj.get_kind_display()
        return "waiting" if obj.signature_valid else ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
