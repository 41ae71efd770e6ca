"""The owner's overview: what the shop sold, gave back and has to look at.

One statement per figure, aggregated by the database (GROUP BY over an index), so the page
costs the same few statements with a hundred orders or a hundred thousand. Days are the shop's
days: midnight to midnight in `settings.SHOP_TIME_ZONE`.
"""

from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    Func,
    Min,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.utils import timezone

from shop.orders.models import PAID_STATUSES, Order, OrderLine, OrderStatus
from shop.refunds.models import Dispute, Refund, RefundStatus

DAYS = 30
REVIEW_LIMIT = 20
BEST_SELLERS = 5
# Stripe's closed dispute statuses; every other status is still open.
DISPUTE_CLOSED = ("won", "lost")


@dataclass(frozen=True)
class Period:
    """Whole days of the shop, first to last inclusive, and the instants that bound them."""

    first_day: date
    last_day: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(), tzinfo=self.zone)

    @property
    def end(self) -> datetime:
        """The midnight after the last day (excluded)."""
        return datetime.combine(self.last_day + timedelta(days=1), time(), tzinfo=self.zone)

    @property
    def days(self) -> list[date]:
        return [
            self.first_day + timedelta(days=n)
            for n in range((self.last_day - self.first_day).days + 1)
        ]


def shop_zone() -> ZoneInfo:
    return ZoneInfo(settings.SHOP_TIME_ZONE)


def period_last_days(*, now: datetime | None = None, days: int = DAYS) -> Period:
    """The last `days` days of the shop, today included."""
    zone = shop_zone()
    today = (now or timezone.now()).astimezone(zone).date()
    return Period(today - timedelta(days=days - 1), today, zone)


def period_this_month(*, now: datetime | None = None) -> Period:
    """This calendar month of the shop, up to and including today."""
    zone = shop_zone()
    today = (now or timezone.now()).astimezone(zone).date()
    return Period(today.replace(day=1), today, zone)


@dataclass(frozen=True)
class Day:
    """One day of the revenue chart, in cents."""

    day: date
    orders: int
    sales: int
    refunds: int

    @property
    def net(self) -> int:
        return self.sales - self.refunds


def _paid_in(period: Period) -> QuerySet[Order]:
    """The orders paid in `period`. Their statuses are named (paid and refunded are the ones with
    paid_at, a constraint says so) so the figures read order_sales_idx."""
    return Order.objects.filter(
        status__in=PAID_STATUSES, paid_at__gte=period.start, paid_at__lt=period.end
    )


def days_revenue(*, period: Period) -> list[Day]:
    """Every day of `period`, a day without sales or refunds as zeros: two statements.

    Sales of a day: the totals of the orders paid that day, whatever happened to them later.
    Refunds of a day: the money given back that day (succeeded refunds made that day), whichever
    day the order was paid; a refund is never taken off the day of its sale.
    """
    sales: dict[date, tuple[int, int]] = {}
    for row in (
        _paid_in(period)
        .annotate(quarter=QuarterHour("paid_at"))
        .values("quarter")
        .annotate(orders=Count("id"), amount=Sum("amount_total"))
        .order_by()
    ):
        day = _shop_day(row["quarter"], period.zone)
        orders, amount = sales.get(day, (0, 0))
        sales[day] = (orders + row["orders"], amount + row["amount"])
    refunds: dict[date, int] = {}
    for quarter, given_back in (
        _refunds_given_back(period)
        .annotate(quarter=QuarterHour("created_at"))
        .values("quarter")
        .annotate(amount=Sum("amount"))
        .order_by()
        .values_list("quarter", "amount")
    ):
        day = _shop_day(quarter, period.zone)
        refunds[day] = refunds.get(day, 0) + given_back
    return [Day(day, *sales.get(day, (0, 0)), refunds=refunds.get(day, 0)) for day in period.days]


class QuarterHour(Func):
    """The start of the quarter of an hour a moment falls in (minutes 00, 15, 30 or 45, UTC).

    Figures per day of the shop are grouped by it in the database, then folded into days here
    (at most 96 groups a day): every time zone's midnight falls on a quarter hour, so each
    group lies within one day of the shop. Grouping by the day itself would convert every row
    to the shop's zone, which on SQLite is a Python function per row (0.8 s of a page with
    100,000 orders in the 30 days; this takes 0.3 s). Written with each database's own
    functions: SQLite's strftime, PostgreSQL's date_bin (14 and newer, as Django 5.2 needs).
    """

    arity = 1
    output_field = DateTimeField()

    def as_sqlite(  # type: ignore[override]  # plain SQL, not SQLiteNumericMixin's cast
        self, compiler: Any, connection: Any, **extra: Any
    ) -> tuple[str, list[Any]]:
        # Django keeps datetimes in SQLite as UTC text, which strftime reads, and reads this
        # text ("YYYY-MM-DD HH:MM") back as a datetime (the output field's converter).
        moment, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"strftime(%s, {moment}) || printf(%s, CAST(strftime(%s, {moment}) AS INTEGER) "
            "/ 15 * 15)"
        )
        return sql, ["%Y-%m-%d %H:", *params, "%02d", "%M", *params]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        moment, params = compiler.compile(self.source_expressions[0])
        return f"date_bin(%s::interval, {moment}, %s::timestamptz)", [
            "15 minutes",
            *params,
            "2000-01-01 00:00+00",
        ]


def _shop_day(quarter: datetime, zone: ZoneInfo) -> date:
    return quarter.astimezone(zone).date()


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: str
    orders: int
    amount: int
    # Among these orders: those with money given back (for paid ones: partially refunded),
    # and those whose payment is disputed.
    refunded_in_part: int
    disputed: int


def orders_by_status(*, period: Period) -> list[StatusCount]:
    """Orders placed (checkout started) in `period`, per status as they stand now; every status
    listed, an absent one as zero. One statement."""
    counted = {
        row["status"]: (row["orders"], row["amount"], row["refunded_in_part"], row["disputed"])
        # Every status, said outright (a constraint allows no other): PostgreSQL (before 18)
        # has no skip scan, so only then can it read order_status_idx rather than every order.
        for row in Order.objects.filter(
            status__in=OrderStatus.values, created_at__gte=period.start, created_at__lt=period.end
        )
        .values("status")
        .annotate(
            orders=Count("id"),
            amount=Sum("amount_total"),
            refunded_in_part=Count("id", filter=Q(status=OrderStatus.PAID, amount_refunded__gt=0)),
            disputed=Count("id", filter=Q(disputed=True)),
        )
        .order_by()
    }
    return [
        StatusCount(status.value, status.label, *counted.get(status, (0, 0, 0, 0)))
        for status in OrderStatus
    ]


@dataclass(frozen=True)
class RefundCount:
    status: str
    label: str
    refunds: int
    amount: int


def refunds_by_status(*, period: Period) -> list[RefundCount]:
    """Refunds of the shop's orders made in `period`, per status; every status listed. One
    statement. Succeeded ones are money given back; pending ones may still be."""
    counted = {
        row["status"]: (row["refunds"], row["amount"])
        for row in Refund.objects.filter(
            order__isnull=False, created_at__gte=period.start, created_at__lt=period.end
        )
        .values("status")
        .annotate(refunds=Count("id"), amount=Sum("amount"))
        .order_by()
    }
    return [
        RefundCount(status.value, status.label, *counted.get(status, (0, 0)))
        for status in RefundStatus
    ]


@dataclass(frozen=True)
class DisputeCount:
    state: str  # open, won or lost
    disputes: int
    amount: int
    # The earliest deadline for evidence among open disputes.
    evidence_due_by: datetime | None


DISPUTE_STATES = ("open", "won", "lost")


def disputes_by_state(*, period: Period) -> list[DisputeCount]:
    """Disputes opened in `period`: open ones (Stripe still waits for evidence or decides),
    won and lost; each state listed. One statement."""
    state = Case(
        *(When(status=closed, then=Value(closed)) for closed in DISPUTE_CLOSED),
        default=Value("open"),
    )
    counted = {
        row["state"]: DisputeCount(
            row["state"],
            row["disputes"],
            row["amount"],
            row["evidence_due_by"] if row["state"] == "open" else None,
        )
        for row in Dispute.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
        .annotate(state=state)
        .values("state")
        .annotate(
            disputes=Count("id"), amount=Sum("amount"), evidence_due_by=Min("evidence_due_by")
        )
        .order_by()
    }
    return [counted.get(name) or DisputeCount(name, 0, 0, None) for name in DISPUTE_STATES]


@dataclass(frozen=True)
class ReviewOrder:
    id: int
    reference: str
    status: str
    amount_total: int
    currency: str
    review_reason: str
    created_at: datetime


@dataclass(frozen=True)
class ReviewList:
    orders: list[ReviewOrder]
    # All orders needing review; `orders` holds the newest `limit` of them.
    total: int


def orders_needing_review(*, limit: int = REVIEW_LIMIT) -> ReviewList:
    """The newest orders flagged for review, and how many there are: one statement (the count
    is a window over the same rows, taken before the limit)."""
    rows = list(
        Order.objects.filter(needs_review=True)
        .annotate(total=Window(Count("id")))
        .order_by("-created_at", "-id")
        .values(*(field.name for field in fields(ReviewOrder)), "total")[:limit]
    )
    total = rows[0].pop("total") if rows else 0
    for row in rows[1:]:
        del row["total"]
    return ReviewList([ReviewOrder(**row) for row in rows], total)


@dataclass(frozen=True)
class ProductSales:
    product_id: int
    name: str
    units: int
    amount: int
    orders: int


def best_sellers(*, period: Period, limit: int = BEST_SELLERS) -> list[ProductSales]:
    """Products by units sold in orders paid in `period` (the revenue chart's orders; a refund
    is not tied to a product, so none is taken off). One statement."""
    paid = _paid_in(period)
    # Lines carry no date: without a bound PostgreSQL hashes the window's orders and reads every
    # line ever sold. No order paid in the window is older than the first of them, so lines
    # from there on are all that can count, and the order_id index finds them. (`id + 0`: on
    # a bare MIN(id) PostgreSQL walks the primary key from the oldest order instead.)
    first_paid = (
        paid.order_by()
        .annotate(window=Value(1))
        .values("window")
        .annotate(first=Min(F("id") + 0))
        .values("first")
    )
    return [
        ProductSales(**row)
        for row in OrderLine.objects.filter(
            order_id__gte=Subquery(first_paid), order__in=paid.values("id")
        )
        .values("product_id")
        .annotate(
            name=F("product__name"),
            units=Sum("quantity"),
            amount=Sum(F("unit_amount") * F("quantity")),
            orders=Count("order_id"),
        )
        .order_by("-units", "-amount", "name")[:limit]
    ]


@dataclass(frozen=True)
class Overview:
    """Every figure of the owner's overview page."""

    zone: ZoneInfo
    days: Period
    month: Period
    revenue: list[Day]
    statuses: list[StatusCount]
    refunds: list[RefundCount]
    disputes: list[DisputeCount]
    review: ReviewList
    best_sellers: list[ProductSales]

    @property
    def sales(self) -> int:
        return sum(day.sales for day in self.revenue)

    @property
    def refunded(self) -> int:
        return sum(day.refunds for day in self.revenue)

    @property
    def paid_orders(self) -> int:
        return sum(day.orders for day in self.revenue)

    @property
    def net(self) -> int:
        return self.sales - self.refunded


def overview(*, now: datetime | None = None) -> Overview:
    """The owner's overview as of `now`: seven statements, whatever the number of orders."""
    now = now or timezone.now()
    days, month = period_last_days(now=now), period_this_month(now=now)
    return Overview(
        zone=days.zone,
        days=days,
        month=month,
        revenue=days_revenue(period=days),
        statuses=orders_by_status(period=days),
        refunds=refunds_by_status(period=month),
        disputes=disputes_by_state(period=month),
        review=orders_needing_review(),
        best_sellers=best_sellers(period=days),
    )


def _refunds_given_back(period: Period) -> QuerySet[Refund]:
    return Refund.objects.filter(
        order__isnull=False,
        status=RefundStatus.SUCCEEDED,
        created_at__gte=period.start,
        created_at__lt=period.end,
    )
