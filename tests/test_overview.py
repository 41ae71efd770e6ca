"""The owner's overview: its figures on a known data set, who may see it, and its settings."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from shop.orders.models import Order, OrderLine, OrderStatus
from shop.refunds.models import Dispute, Refund, RefundOrigin, RefundStatus
from shop.reports.selectors import (
    Day,
    DisputeCount,
    ProductSales,
    ReviewList,
    StatusCount,
    orders_needing_review,
    overview,
)
from shop.web.chart import revenue_chart

ROOT = Path(__file__).resolve().parents[1]


def _settings_with(**env):
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "SHOP_"))
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.SHOP_TIME_ZONE)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true", **env},
    )


def test_shop_time_zone_defaults_to_utc_and_takes_an_iana_name():
    assert _settings_with().stdout.strip() == "UTC"
    assert _settings_with(SHOP_TIME_ZONE="Europe/Berlin").stdout.strip() == "Europe/Berlin"


def test_an_unknown_shop_time_zone_stops_the_shop_naming_the_variable():
    for bad in ("Mars/Olympus", "../../etc/passwd"):
        result = _settings_with(SHOP_TIME_ZONE=bad)

        assert result.returncode != 0, bad
        assert "ImproperlyConfigured" in result.stderr, bad
        assert f"SHOP_TIME_ZONE={bad!r} is not a time zone" in result.stderr, bad


# --- The figures, on a known data set ---------------------------------------------------------

NOW = datetime(2025, 3, 20, 11, 0, tzinfo=UTC)  # Berlin is UTC+1 until March 30th


def at(day, hour, minute=0, second=0):
    """A March 2025 instant in UTC (February for days above 16, as the data set needs)."""
    month = 2 if day > 16 else 3
    return datetime(2025, month, day, hour, minute, second, tzinfo=UTC)


def order(lines, *, status=OrderStatus.PAID, paid_at=None, created_at=None, **fields):
    paid = status in (OrderStatus.PAID, OrderStatus.REFUNDED)
    created_at = created_at or paid_at - timedelta(minutes=10)
    made = Order.objects.create(
        customer_key="overview-test",
        status=status,
        currency="usd",
        amount_total=sum(product.unit_amount * quantity for product, quantity in lines),
        cart_key=f"test-{created_at.timestamp()}",
        checkout_expires_at=created_at + timedelta(minutes=45),
        created_at=created_at,
        paid_at=paid_at if paid else None,
        **fields,
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=made,
            product=product,
            product_name=product.name,
            unit_amount=product.unit_amount,
            quantity=quantity,
        )
        for product, quantity in lines
    )
    return made


def refund(of, amount, created_at, status=RefundStatus.SUCCEEDED):
    return Refund.objects.create(
        order=of,
        payment_intent_id=of.payment_intent_id if of else "pi_not_ours",
        amount=amount,
        currency="usd",
        status=status,
        origin=RefundOrigin.PROVIDER,
        created_at=created_at,
    )


def dispute(of, status, created_at, **fields):
    return Dispute.objects.create(
        provider_dispute_id=f"dp_{of.pk}_{status}",
        order=of,
        payment_intent_id=of.payment_intent_id,
        amount=of.amount_total,
        currency="usd",
        status=status,
        created_at=created_at,
        **fields,
    )


@pytest.fixture
def shop_data(products):
    """Every kind of order the overview must count, or must not, in February and March 2025."""
    beans, mug, filters = products  # $12.50, $18.00, $6.50
    orders = {
        # 23:30 UTC on February 18th is 00:30 on the 19th in Berlin: the window's first day.
        "edge": order([(beans, 1)], paid_at=at(18, 23, 30)),
        # Paid before the window, refunded inside it (on March 2nd).
        "old": order(
            [(mug, 1)], status=OrderStatus.REFUNDED, paid_at=at(17, 12), amount_refunded=1800
        ),
        "a": order([(beans, 2)], paid_at=at(3, 10)),
        # 23:30 UTC on March 3rd: March 4th in Berlin.
        "late": order([(mug, 1), (filters, 1)], paid_at=at(3, 23, 30)),
        "refunded": order(
            [(mug, 2)], status=OrderStatus.REFUNDED, paid_at=at(5, 9), amount_refunded=3600
        ),
        "partial": order(
            [(beans, 1), (filters, 2)], paid_at=at(5, 15), amount_refunded=1000, disputed=True
        ),
        "failed": order([(beans, 3)], status=OrderStatus.FAILED, created_at=at(5, 12)),
        "expired": order(
            [(mug, 1)],
            status=OrderStatus.EXPIRED,
            created_at=at(6, 12),
            needs_review=True,
            review_reason="Paid after its checkout expired.",
        ),
        "pending": order([(filters, 1)], status=OrderStatus.PENDING, created_at=at(20, 10)),
        "flagged": order(
            [(beans, 1)],
            paid_at=at(12, 14),
            needs_review=True,
            review_reason="Paid through an unexpected session.",
        ),
    }
    refund(orders["old"], 1800, at(2, 10))
    refund(orders["partial"], 1000, at(6, 9))
    refund(orders["refunded"], 3600, at(8, 10))
    refund(orders["partial"], 500, at(10, 10), status=RefundStatus.PENDING)
    refund(orders["a"], 100, at(11, 10), status=RefundStatus.FAILED)
    refund(None, 999, at(8, 11))  # a payment that is not one of our orders
    dispute(orders["partial"], "needs_response", at(9, 8), evidence_due_by=at(19, 23, 59))
    dispute(orders["a"], "won", at(2, 8))
    dispute(orders["edge"], "lost", at(25, 8))  # February: not this month
    return orders


def by_day(figures):
    return {day.day: day for day in figures.revenue}


@pytest.fixture
def berlin(settings):
    settings.SHOP_TIME_ZONE = "Europe/Berlin"


def test_revenue_counts_each_sale_on_its_paid_day_and_each_refund_on_its_own(berlin, shop_data):
    figures = overview(now=NOW)

    days = by_day(figures)
    assert figures.days.first_day == date(2025, 2, 19) and figures.days.last_day == date(
        2025, 3, 20
    )
    assert len(figures.revenue) == 30
    assert days[date(2025, 2, 19)] == Day(date(2025, 2, 19), orders=1, sales=1250, refunds=0)
    assert days[date(2025, 3, 2)] == Day(date(2025, 3, 2), orders=0, sales=0, refunds=1800)
    assert days[date(2025, 3, 3)] == Day(date(2025, 3, 3), orders=1, sales=2500, refunds=0)
    assert days[date(2025, 3, 4)] == Day(date(2025, 3, 4), orders=1, sales=2450, refunds=0)
    # The refunded and the partially refunded orders count in full on the day they were paid…
    assert days[date(2025, 3, 5)] == Day(date(2025, 3, 5), orders=2, sales=6150, refunds=0)
    # …and what was given back counts on the day it was given back.
    assert days[date(2025, 3, 6)] == Day(date(2025, 3, 6), orders=0, sales=0, refunds=1000)
    assert days[date(2025, 3, 8)] == Day(date(2025, 3, 8), orders=0, sales=0, refunds=3600)
    assert days[date(2025, 3, 12)] == Day(date(2025, 3, 12), orders=1, sales=1250, refunds=0)
    # A day without sales is there, as zeros; failed, expired and pending orders never count.
    assert days[date(2025, 3, 7)] == Day(date(2025, 3, 7), orders=0, sales=0, refunds=0)
    assert sum(day.sales > 0 or day.refunds > 0 for day in figures.revenue) == 8
    assert (figures.paid_orders, figures.sales, figures.refunded, figures.net) == (
        6,
        13600,
        6400,
        7200,
    )
    assert days[date(2025, 3, 8)].net == -3600


def test_days_are_the_shops_days(settings, shop_data):
    settings.SHOP_TIME_ZONE = "UTC"

    days = by_day(overview(now=NOW))

    # In UTC the 23:30 sales belong to the day before: the 18th (outside) and March 3rd.
    assert days[date(2025, 2, 19)].orders == 0
    assert days[date(2025, 3, 3)] == Day(date(2025, 3, 3), orders=2, sales=4950, refunds=0)
    assert days[date(2025, 3, 4)].orders == 0


def test_a_day_of_a_zone_with_a_quarter_hour_offset_starts_at_its_own_midnight(settings, products):
    # Kathmandu is UTC+5:45: its midnight is 18:15 UTC, and so are the day's edges.
    settings.SHOP_TIME_ZONE = "Asia/Kathmandu"
    beans = products[0]
    order([(beans, 1)], paid_at=at(10, 18, 14, 59))  # 23:59:59 on March 10th there
    order([(beans, 2)], paid_at=at(10, 18, 15))  # 00:00 on March 11th there
    later = order([(beans, 4)], paid_at=at(11, 18, 14))
    refund(later, 300, at(11, 18, 16))  # 00:01 on March 12th there

    days = by_day(overview(now=NOW))

    assert days[date(2025, 3, 10)] == Day(date(2025, 3, 10), orders=1, sales=1250, refunds=0)
    assert days[date(2025, 3, 11)] == Day(date(2025, 3, 11), orders=2, sales=7500, refunds=0)
    assert days[date(2025, 3, 12)] == Day(date(2025, 3, 12), orders=0, sales=0, refunds=300)


def test_days_across_a_change_to_summer_time_follow_the_local_clock(settings, products):
    # New York moves to UTC-4 on March 9th, 2025: its midnight is 05:00 UTC before, 04:00 after.
    settings.SHOP_TIME_ZONE = "America/New_York"
    beans = products[0]
    order([(beans, 1)], paid_at=at(9, 4, 30))  # 23:30 on March 8th (still UTC-5)
    order([(beans, 2)], paid_at=at(10, 3, 59))  # 23:59 on March 9th (now UTC-4)
    order([(beans, 4)], paid_at=at(10, 4, 0))  # 00:00 on March 10th

    days = by_day(overview(now=NOW))

    assert (days[date(2025, 3, 8)].orders, days[date(2025, 3, 8)].sales) == (1, 1250)
    assert (days[date(2025, 3, 9)].orders, days[date(2025, 3, 9)].sales) == (1, 2500)
    assert (days[date(2025, 3, 10)].orders, days[date(2025, 3, 10)].sales) == (1, 5000)


def test_orders_by_status_counts_orders_placed_in_the_last_30_days(berlin, shop_data):
    statuses = {row.status: row for row in overview(now=NOW).statuses}

    assert list(statuses) == ["pending", "paid", "failed", "expired", "refunded"]
    assert statuses["paid"] == StatusCount("paid", "Paid", 5, 10000, 1, 1)
    assert statuses["refunded"] == StatusCount("refunded", "Refunded", 1, 3600, 0, 0)
    assert statuses["failed"] == StatusCount("failed", "Failed", 1, 3750, 0, 0)
    assert statuses["expired"] == StatusCount("expired", "Expired", 1, 1800, 0, 0)
    assert statuses["pending"] == StatusCount("pending", "Pending", 1, 650, 0, 0)


def test_refunds_and_disputes_of_this_month(berlin, shop_data):
    figures = overview(now=NOW)

    assert (figures.month.first_day, figures.month.last_day) == (
        date(2025, 3, 1),
        date(2025, 3, 20),
    )
    assert [(r.status, r.refunds, r.amount) for r in figures.refunds] == [
        ("pending", 1, 500),
        ("succeeded", 3, 6400),
        ("failed", 1, 100),
        ("canceled", 0, 0),
    ]
    assert figures.disputes == [
        DisputeCount("open", 1, 2550, at(19, 23, 59)),
        DisputeCount("won", 1, 2500, None),
        DisputeCount("lost", 0, 0, None),
    ]


def test_orders_needing_review_newest_first_with_their_total(berlin, shop_data):
    review = overview(now=NOW).review

    assert [o.reference for o in review.orders] == [
        shop_data["flagged"].reference,
        shop_data["expired"].reference,
    ]
    assert review.total == 2
    assert review.orders[1].review_reason == "Paid after its checkout expired."

    first = orders_needing_review(limit=1)
    assert [o.id for o in first.orders] == [shop_data["flagged"].pk]
    assert first.total == 2
    Order.objects.update(needs_review=False)
    assert orders_needing_review() == ReviewList([], 0)


def test_best_sellers_by_units_in_the_orders_paid_in_the_last_30_days(berlin, shop_data, products):
    beans, mug, filters = products

    assert overview(now=NOW).best_sellers == [
        ProductSales(beans.pk, beans.name, units=5, amount=6250, orders=4),
        ProductSales(mug.pk, mug.name, units=3, amount=5400, orders=2),
        ProductSales(filters.pk, filters.name, units=3, amount=1950, orders=2),
    ]


def test_each_figure_is_one_statement(berlin, shop_data, django_assert_num_queries):
    with django_assert_num_queries(7):
        overview(now=NOW)


def test_an_empty_shop_has_thirty_zero_days(db, berlin):
    figures = overview(now=NOW)

    assert [day.sales for day in figures.revenue] == [0] * 30
    assert figures.sales == figures.refunded == figures.paid_orders == 0
    assert figures.best_sellers == [] and figures.review == ReviewList([], 0)


# --- The page -----------------------------------------------------------------------------------

OVERVIEW_URL = "/admin/overview/"


@pytest.fixture
def recent_sales(products):
    """Sales of yesterday and today, a refund today, an order needing review."""
    beans, mug, _ = products
    now = timezone.now()
    sold = order([(beans, 2)], paid_at=now - timedelta(days=1))
    order([(mug, 1)], paid_at=now - timedelta(minutes=5))
    refund(sold, 1000, now - timedelta(minutes=1))
    flagged = order(
        [(mug, 2)],
        status=OrderStatus.EXPIRED,
        created_at=now - timedelta(hours=2),
        needs_review=True,
        review_reason="Paid after its checkout expired.",
    )
    return {"sold": sold, "flagged": flagged}


def test_overview_shows_the_figures_and_says_what_they_mean(admin_client, recent_sales):
    response = admin_client.get(OVERVIEW_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert '<dd class="overview-figure" id="total-sales">$43.00</dd>' in page  # 2500 + 1800
    assert '<dd class="overview-figure" id="total-refunds">$10.00</dd>' in page
    assert '<dd class="overview-figure" id="total-net">$33.00</dd>' in page
    assert "the totals of the orders paid that day" in page
    assert "the money given back that day" in page
    # The chart: one bar per day, today's included, with a title and described by the table.
    assert page.count('<g class="chart-day"') == 30
    assert 'role="img" aria-labelledby="revenue-chart-title"' in page
    assert 'aria-details="revenue-table"' in page and '<table id="revenue-table">' in page
    assert '<caption id="revenue-table-caption">Revenue per day</caption>' in page
    assert page.count('<th scope="row"><time datetime=') == 30
    # Each order needing review links to its admin page.
    flagged = recent_sales["flagged"]
    assert f'<a href="/admin/shop/order/{flagged.pk}/change/">{flagged.reference}</a>' in page
    assert "Paid after its checkout expired." in page


def test_overview_page_has_no_inline_style_or_script(admin_client, recent_sales):
    page = admin_client.get(OVERVIEW_URL).content.decode()

    assert " style=" not in page and "<style" not in page
    assert page.count("<script") == page.count("<script src=")
    assert "/static/shop/overview.css" in page


def test_the_admin_index_links_to_the_overview(admin_client):
    page = admin_client.get("/admin/").content.decode()

    assert f'<a href="{OVERVIEW_URL}" id="owner-overview-link">Owner\'s overview</a>' in page


def test_anonymous_visitors_are_sent_to_the_admin_login(client, recent_sales):
    response = client.get(OVERVIEW_URL)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={OVERVIEW_URL}"


def test_a_logged_in_customer_who_is_not_staff_is_refused(client, django_user_model, recent_sales):
    client.force_login(django_user_model.objects.create_user("customer", password="pw-1234567"))

    response = client.get(OVERVIEW_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert b"$43.00" not in client.get(OVERVIEW_URL, follow=True).content


def test_staff_who_may_not_see_orders_are_refused(client, django_user_model, recent_sales):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", password="pw-1234567", is_staff=True)
    client.force_login(clerk)
    assert client.get(OVERVIEW_URL).status_code == 403

    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    assert client.get(OVERVIEW_URL).status_code == 200


def test_the_overview_only_answers_reads(admin_client, db):
    assert admin_client.post(OVERVIEW_URL).status_code == 405


def test_chart_draws_sales_up_and_refunds_down_on_one_round_scale():
    days = [Day(date(2025, 3, 1) + timedelta(days=n), 0, 0, 0) for n in range(30)]
    days[3] = Day(days[3].day, orders=4, sales=30000, refunds=0)
    days[5] = Day(days[5].day, orders=0, sales=0, refunds=7500)
    days[6] = Day(days[6].day, orders=1, sales=1, refunds=0)

    chart = revenue_chart(days)

    assert len(chart.bars) == 30
    big, refund_day, tiny, empty = chart.bars[3], chart.bars[5], chart.bars[6], chart.bars[0]
    assert big.sales_y + big.sales_height == chart.zero_y
    assert refund_day.refunds_height == pytest.approx(big.sales_height / 4, abs=0.1)
    assert tiny.sales_height == 1.0  # a sale of a cent still shows
    assert empty.sales_height == empty.refunds_height == 0  # a zero bar, in its place
    assert [tick.amount for tick in chart.ticks] == [30000, 20000, 10000, 0]
    assert chart.ticks[0].y == chart.bars[3].sales_y  # the top tick is the best day
    # Dates under every seventh bar, counted back from the last day.
    assert [bar.day.day.day for bar in chart.bars if bar.labelled] == [2, 9, 16, 23, 30]


def _plan(sql):
    from django.db import connection

    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        return "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())


def test_the_order_figures_read_through_indexes_not_every_order(products):
    """With years of orders and the statistics autovacuum would gather, the figures over orders
    read the window's orders (and their lines) or the flagged orders through an index, on both
    databases."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from devtools.overview import orders_for_overview_create

    orders_for_overview_create(count=6000, days=1000)  # runs ANALYZE

    with CaptureQueriesContext(connection) as queries:
        overview()
    sales, _, statuses, _, _, review, best = (_plan(q["sql"]) for q in queries.captured_queries)

    assert "order_sales_idx" in sales, sales
    assert "order_status_idx" in statuses, statuses
    assert "order_review_idx" in review, review
    # Best sellers read the window's lines by order, not every line ever sold.
    assert "order_sales_idx" in best, best
    assert "Seq Scan on shop_orderline" not in best and "SCAN shop_orderline" not in best, best


def test_each_status_count_links_to_the_orders_it_counts(admin_client, recent_sales, berlin):
    import html
    import re

    page = admin_client.get(OVERVIEW_URL).content.decode()
    links = dict(re.findall(r'<a href="([^"]+)">(Paid|Expired|Failed)</a>', page))
    links = {label: html.unescape(url) for url, label in links.items()}

    assert "created_at__gte=" in links["Paid"]  # the same 30 days, in the shop's zone
    assert "2 orders" in admin_client.get(links["Paid"]).content.decode()
    assert "1 order" in admin_client.get(links["Expired"]).content.decode()
    assert "0 orders" in admin_client.get(links["Failed"]).content.decode()
