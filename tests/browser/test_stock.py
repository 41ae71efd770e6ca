"""Limited stock in Chromium: the steppers stop at what is left, a sold-out product cannot be
chosen, and the page stays accessible."""

import pytest
from playwright.sync_api import Page, expect

from shop.catalogue.models import Product
from tests.browser.support import assert_accessible, quantity_field

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited(products):
    coffee, mug, filters = products
    Product.objects.filter(pk=mug.pk).update(stock=0)
    Product.objects.filter(pk=filters.pk).update(stock=2)
    return products


def test_steppers_stop_at_what_is_left_and_sold_out_cannot_be_chosen(page: Page, limited):
    coffee, mug, filters = limited
    page.goto("/")

    expect(page.locator(f'[data-product-id="{mug.pk}"]')).to_contain_text("Sold out")
    expect(quantity_field(page, mug)).to_be_disabled()
    expect(page.get_by_role("button", name=f"Add one {mug.name}")).to_be_disabled()

    expect(page.locator(f'[data-product-id="{filters.pk}"]')).to_contain_text("Only 2 left")
    add = page.get_by_role("button", name=f"Add one {filters.name}")
    for _ in range(3):
        add.click()
    expect(quantity_field(page, filters)).to_have_value("2")

    quantity_field(page, filters).fill("3")
    expect(page.locator("#cart-count")).to_have_text(f"{filters.name}: only 2 left.")


def test_limited_stock_storefront_has_no_serious_accessibility_violations(page: Page, limited):
    page.goto("/")
    assert_accessible(page)
