"""The hosted payment page's HTML: what a browser sees at a Checkout Session's ``url``.

An open session shows its line items, its total, a Pay button and a Cancel link; any other
session says what it is.
"""

from __future__ import annotations

import html

from devtools.fakestripe.objects import Json
from devtools.fakestripe.params import LineItem


def checkout_page(session: Json, items: list[LineItem]) -> str:
    rows = "".join(_line_item_row(item) for item in items)
    total = _money(int(session["amount_total"]), session["currency"])
    parts = [
        '<table id="line-items"><thead><tr><th>Item</th><th>Qty</th><th>Amount</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>",
        f'<p>Total: <strong id="total">{html.escape(total)}</strong></p>',
    ]
    if session["status"] == "open":
        action = html.escape(f"/c/pay/{session['id']}")
        cancel = html.escape(session["cancel_url"])
        parts.append(
            f'<form method="post" action="{action}"><button type="submit" id="pay">Pay</button>'
            f'</form>\n<p><a id="cancel" href="{cancel}">Cancel</a></p>'
        )
    else:
        status = html.escape(str(session["status"]))
        parts.append(f'<p id="status">This Checkout Session is {status}.</p>')
    return document("\n".join(parts))


def document(body: str) -> str:
    """A whole page around ``body``, which is HTML already."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Fake Stripe Checkout</title>"
        "<style>body{font-family:sans-serif;max-width:36rem;margin:2rem auto}"
        "table{width:100%;border-collapse:collapse}td,th{padding:.3rem;text-align:left}"
        "</style></head><body><h1>Fake Stripe Checkout</h1>\n"
        f"{body}\n</body></html>\n"
    )


def _line_item_row(item: LineItem) -> str:
    return (
        f'<tr><td class="name">{html.escape(item.name)}</td>'
        f'<td class="quantity">{item.quantity}</td>'
        f'<td class="amount">{html.escape(_money(item.amount, item.currency))}</td></tr>'
    )


def _money(amount: int, currency: str) -> str:
    if currency == "usd":
        return f"${amount / 100:,.2f}"
    return f"{amount / 100:,.2f} {currency.upper()}"
