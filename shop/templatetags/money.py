from django import template

register = template.Library()

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


@register.filter
def cents(amount: int | None, currency: str = "usd") -> str:
    """Format integer cents for people: 123456 -> $1,234.56. Money is only ever formatted here."""
    if amount is None:
        return ""
    sign = "-" if amount < 0 else ""
    dollars, rest = divmod(abs(int(amount)), 100)
    symbol = SYMBOLS.get((currency or "usd").lower(), (currency or "").upper() + " ")
    return f"{sign}{symbol}{dollars:,}.{rest:02d}"
