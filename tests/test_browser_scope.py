"""Runs after tests/browser (pytest collects the folder first): its settings must not leak."""

import os


def test_async_unsafe_orm_access_is_switched_on_for_browser_tests_only():
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ
