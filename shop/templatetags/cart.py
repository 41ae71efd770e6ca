from django import template

from shop.orders.cart import cart_field_name

register = template.Library()


@register.filter
def cart_field(product_id: int) -> str:
    """The checkout form's field for a product: the name the cart parser reads."""
    return cart_field_name(product_id)


@register.filter
def posted_quantity(quantities: dict[str, str] | None, product_id: int) -> str:
    """What the customer typed for this product before a cart error, or 0."""
    return (quantities or {}).get(cart_field_name(product_id), "0")
