"""Queries compiled once per process answer exactly what their querysets answer."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, OuterRef

from shop.compiled import CompiledQuery
from shop.orders.models import Order, OrderLine
from tests.conftest import buy

pytestmark = pytest.mark.django_db


def _by_key(customer_key: str):
    return (
        Order.objects.filter(customer_key=customer_key, amount_total__gt=0)
        .annotate(has_lines=Exists(OrderLine.objects.filter(order=OuterRef("pk"))))
        .order_by("id")
    )


def test_each_call_runs_with_its_own_values_and_gets_model_instances(products, fake_stripe, client):
    from django.test import Client

    buy(client, products, 1, 0, 0)
    other = Client()
    buy(other, products, 0, 2, 0)
    keys = list(Order.objects.order_by("id").values_list("customer_key", flat=True))
    compiled = CompiledQuery(_by_key, "customer_key")

    for key in [*keys, "nobody"]:
        expected = list(_by_key(key))
        found = compiled.objects(customer_key=key)
        assert [o.pk for o in found] == [o.pk for o in expected]
        for got, want in zip(found, expected, strict=True):
            # Converted as the ORM converts (times are aware datetimes on SQLite too).
            assert got.created_at == want.created_at
            assert got.amount_total == want.amount_total
            assert bool(got.has_lines) is want.has_lines is True


def test_plain_rows_for_a_values_list_query(products, fake_stripe, client):
    buy(client, products, 0, 0, 3)
    order = Order.objects.get()
    compiled = CompiledQuery(
        lambda reference: Order.objects.filter(reference=reference).values_list(
            "id", "amount_total"
        ),
        "reference",
    )
    assert compiled.rows(reference=order.reference) == [(order.pk, order.amount_total)]
    assert compiled.rows(reference="ord_unknown") == []


def test_a_value_the_query_does_not_take_as_one_parameter_is_refused(db):
    # The marker ends up inside a LIKE pattern, not as a parameter of its own.
    compiled = CompiledQuery(lambda key: Order.objects.filter(customer_key__contains=key), "key")
    with pytest.raises(ImproperlyConfigured):
        compiled.objects(key="x")
