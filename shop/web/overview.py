"""The owner's overview: an admin page (see shop/web/admin_site.py) reading the report selectors."""

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from shop.background.health import worker_health
from shop.payments.webhooks import processing_in_worker
from shop.reports.selectors import overview
from shop.web.chart import revenue_chart


@require_safe
def owner_overview(request: HttpRequest, *, site_context: dict[str, Any]) -> TemplateResponse:
    now = timezone.now()
    figures = overview(now=now)
    # The order list's own filters, so each count can be checked against the orders it counts.
    placed = urlencode(
        {
            "created_at__gte": figures.days.start.isoformat(),
            "created_at__lt": figures.days.end.isoformat(),
        }
    )
    return TemplateResponse(
        request,
        "shop/admin/overview.html",
        {
            **site_context,
            "title": "Owner's overview",
            "now": now,
            "figures": figures,
            "chart": revenue_chart(figures.revenue),
            "placed_query": placed,
            "worker": worker_health(),
            "webhooks_in_worker": processing_in_worker(),
        },
    )
