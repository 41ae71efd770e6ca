"""Limited stock: held at checkout, released or sold exactly once, never oversold."""

import pytest
from django.db import IntegrityError, transaction

from shop.catalogue.models import Product

pytestmark = pytest.mark.django_db


def limit(product, stock):
    Product.objects.filter(pk=product.pk).update(stock=stock)
    product.refresh_from_db()
    return product


def counts(product):
    product.refresh_from_db()
    return {"stock": product.stock, "sold": product.sold, "held": product.held}


def test_products_are_unlimited_unless_given_a_stock(products):
    assert [p.stock for p in products] == [None, None, None]
    assert [p.available for p in products] == [None, None, None]


def test_available_is_stock_less_sold_and_held_never_below_zero(products):
    mug = products[1]
    mug.stock, mug.sold, mug.held = 12, 4, 3
    assert mug.available == 5
    mug.stock = 6  # lowered by the owner below what is sold and held
    assert mug.available == 0


@pytest.mark.parametrize("field", ["stock", "held", "sold"])
def test_database_keeps_stock_and_its_counts_from_going_below_zero(products, field):
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=products[0].pk).update(**{field: -1})


def test_admin_shows_held_and_available_next_to_stock(admin_client, products):
    mug = limit(products[1], 12)
    Product.objects.filter(pk=mug.pk).update(held=3, sold=4)

    page = admin_client.get(f"/admin/shop/product/{mug.pk}/change/").content.decode()
    listing = admin_client.get("/admin/shop/product/").content.decode()

    assert 'name="stock" value="12"' in page
    assert 'name="held"' not in page and 'name="sold"' not in page  # shown, never edited
    assert "field-held" in page and "field-available" in page
    assert '<td class="field-available">5</td>' in listing


def test_admin_edit_never_overwrites_holds_and_sales_made_while_the_form_was_open(
    admin_client, products, monkeypatch
):
    mug = limit(products[1], 12)
    form = {
        "name": mug.name,
        "description": mug.description,
        "unit_amount": mug.unit_amount,
        "stock": "20",
        "position": mug.position,
        "active": "on",
    }
    real_save = Product.save

    def save_after_a_sale(self, *args, **kwargs):
        # Checkouts hold and sell units between the admin's read and its save.
        Product.objects.filter(pk=mug.pk).update(held=2, sold=5)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Product, "save", save_after_a_sale)

    response = admin_client.post(f"/admin/shop/product/{mug.pk}/change/", form)

    assert response.status_code == 302
    assert counts(mug) == {"stock": 20, "sold": 5, "held": 2}


def test_admin_list_edit_never_overwrites_holds(admin_client, products, monkeypatch):
    mug = limit(products[1], 12)
    Product.objects.filter(pk=mug.pk).update(held=2)
    form = {
        "form-TOTAL_FORMS": "3",
        "form-INITIAL_FORMS": "3",
        "_save": "Save",
    }
    for i, product in enumerate(Product.objects.order_by("position", "id")):
        form[f"form-{i}-id"] = str(product.pk)
        form[f"form-{i}-position"] = str(product.position + 10)
        form[f"form-{i}-active"] = "on"

    real_save = Product.save

    def save_after_a_hold(self, *args, **kwargs):
        if self.pk == mug.pk:  # a checkout holds one more between the page's read and its save
            Product.objects.filter(pk=mug.pk).update(held=3)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Product, "save", save_after_a_hold)

    response = admin_client.post("/admin/shop/product/", form)

    assert response.status_code == 302
    assert counts(mug)["held"] == 3
