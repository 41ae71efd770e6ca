"""Runs after tests/browser (pytest-django runs transactional tests last, in collection order,
and the browser tests are collected first): their settings must not leak."""

import os

import pytest


@pytest.mark.django_db(transaction=True)
def test_async_unsafe_orm_access_is_switched_on_for_browser_tests_only():
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ
