"""The owner's refunds in the admin: the records, and the Refund button on an order."""

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from shop.orders.models import Order
from shop.refunds.models import Dispute, Refund, RefundReason
from shop.refunds.services import refund_remaining, refund_request
from shop.results import Kind


class RefundForm(forms.Form):
    amount = forms.DecimalField(
        label="Amount in dollars",
        min_value=Decimal("0.01"),
        decimal_places=2,
        max_digits=10,
        help_text="Prefilled with what can still be refunded; lower it for a partial refund.",
    )
    reason = forms.ChoiceField(choices=RefundReason.choices)

    def cents(self) -> int:
        try:
            return int((self.cleaned_data["amount"] * 100).to_integral_exact())
        except InvalidOperation:  # pragma: no cover - decimal_places=2 already refuses it
            raise forms.ValidationError("Whole cents only.") from None


def refund_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    """GET: the form, prefilled; POST: one refund request through the one refund service."""
    order = get_object_or_404(Order, pk=object_id)
    if not model_admin.has_change_permission(request, order):
        raise PermissionDenied
    change_url = reverse("admin:shop_order_change", args=[order.pk])
    remaining = refund_remaining(order)
    form = RefundForm(
        request.POST or None,
        initial={
            "amount": (Decimal(remaining) / 100).quantize(Decimal("0.01")),
            "reason": RefundReason.REQUESTED_BY_CUSTOMER,
        },
    )
    if request.method == "POST" and form.is_valid():
        result = refund_request(
            order_reference=order.reference,
            amount=form.cents(),
            reason=form.cleaned_data["reason"],
            requested_by=request.user,
        )
        level = messages.SUCCESS if result.kind == Kind.APPLIED else messages.ERROR
        model_admin.message_user(request, f"{order.reference}: {result.message}", level)
        if result.kind == Kind.APPLIED:
            return HttpResponseRedirect(change_url)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Refund {order.reference}",
        "opts": model_admin.model._meta,
        "order": order,
        "remaining": remaining,
        "form": form,
        "change_url": change_url,
    }
    return TemplateResponse(request, "admin/shop/order/refund.html", context)


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fk_name = "order"
    fields = readonly_fields = (
        "created_at",
        "amount",
        "reason",
        "status",
        "origin",
        "cause",
        "requested_by",
        "provider_refund_id",
        "attempts",
        "last_error",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DisputeInline(admin.TabularInline):
    model = Dispute
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at",
        "amount",
        "reason",
        "status",
        "evidence_due_by",
        "closed_at",
        "provider_dispute_id",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "order", "amount", "status", "origin", "reason", "attempts"]
    list_filter = ["status", "origin", "reason"]
    search_fields = ["order__reference", "provider_refund_id", "payment_intent_id"]


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "order", "amount", "reason", "status", "evidence_due_by"]
    list_filter = ["status", "reason"]
    search_fields = ["order__reference", "provider_dispute_id", "payment_intent_id"]
