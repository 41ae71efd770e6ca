"""The revenue chart's geometry, for an SVG drawn by the template: no script, no inline style.

Sales rise above the zero line, refunds hang below it, on one scale with round steps. Only
numbers and dates are computed here; the template formats them (money only ever in templates).
"""

import math
from dataclasses import dataclass
from datetime import date

from shop.reports.selectors import Day

WIDTH = 720
HEIGHT = 280
LEFT = 72  # room for the amounts
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the dates
BAR_SHARE = 0.7  # of a day's slot; the rest is the gap between bars
LABEL_EVERY = 7  # days; counted back from the last, so today is always labelled
# Ticks in cents: 1, 2, 2.5 or 5 times a power of ten, at least a dollar.
NICE = (1, 2, 2.5, 5)
TICKS_WANTED = 4


@dataclass(frozen=True)
class Bar:
    day: Day
    x: float
    width: float
    sales_y: float
    sales_height: float
    refunds_height: float
    label_x: float
    labelled: bool


@dataclass(frozen=True)
class Tick:
    y: float
    amount: int  # cents; negative below the zero line (given back)


@dataclass(frozen=True)
class RevenueChart:
    width: int
    height: int
    left: int
    right: int
    amount_x: int  # where the amounts end, left of the plot
    zero_y: float
    date_y: float
    bars: list[Bar]
    ticks: list[Tick]
    first_day: date
    last_day: date


def revenue_chart(days: list[Day]) -> RevenueChart:
    """Bars for `days` (oldest first): one slot per day, a day without sales as a zero bar."""
    top_amount = max((day.sales for day in days), default=0)
    bottom_amount = max((day.refunds for day in days), default=0)
    step = _tick_step(max(top_amount, bottom_amount))
    # The top is a round amount (a tick); the bottom only as deep as the largest refund.
    top = max(1, math.ceil(top_amount / step)) * step
    scale = (HEIGHT - TOP - BOTTOM) / (top + bottom_amount)
    zero_y = TOP + top * scale
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    bar_width = slot * BAR_SHARE
    bars = []
    for n, day in enumerate(days):
        x = LEFT + n * slot + (slot - bar_width) / 2
        sales_height = _visible(day.sales * scale)
        bars.append(
            Bar(
                day=day,
                x=round(x, 1),
                width=round(bar_width, 1),
                sales_y=round(zero_y - sales_height, 1),
                sales_height=round(sales_height, 1),
                refunds_height=round(_visible(day.refunds * scale), 1),
                label_x=round(x + bar_width / 2, 1),
                labelled=(len(days) - 1 - n) % LABEL_EVERY == 0,
            )
        )
    ticks = [
        Tick(y=round(zero_y - k * step * scale, 1), amount=int(k * step))
        for k in range(round(top / step), -math.floor(bottom_amount / step) - 1, -1)
    ]
    return RevenueChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        amount_x=LEFT - 6,
        zero_y=round(zero_y, 1),
        date_y=HEIGHT - 8,
        bars=bars,
        ticks=ticks,
        first_day=days[0].day if days else date.min,
        last_day=days[-1].day if days else date.min,
    )


def _tick_step(span: int) -> float:
    """A round step that cuts `span` cents into about TICKS_WANTED parts, at least a dollar."""
    rough = max(span / TICKS_WANTED, 100)
    power = 10 ** math.floor(math.log10(rough))
    return next(n * power for n in (*NICE, 10) if n * power >= rough)


def _visible(height: float) -> float:
    """A bar of a few cents is still a pixel high: a day with sales never looks like none."""
    return max(height, 1.0) if height > 0 else 0.0
