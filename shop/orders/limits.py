"""Limits every part of the shop shares."""

# Stripe's largest amount (eight digits) and its smallest USD charge, in cents.
MAX_AMOUNT = 99_999_999
MIN_CHARGE = 50
MAX_QUANTITY = 99
