"""Forms of the pages: they check what people type; services decide what it means."""

from django import forms


class EmailForm(forms.Form):
    """An email address, checked with Django's EmailValidator."""

    email = forms.EmailField(
        max_length=254,
        error_messages={
            "required": "Enter your email address.",
            "invalid": "Enter a valid email address, like name@example.com.",
            "max_length": "That is longer than any email address can be.",
        },
    )
