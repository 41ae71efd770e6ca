import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from shop.web.http import is_text_charset  # noqa: E402 - needs Django set up


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # Django decodes the query string with the body's charset while building the request,
    # before any middleware: an undecodable charset must be refused out here.
    if not is_text_charset(environ.get("CONTENT_TYPE", "")):
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"Unsupported charset.\n"]
    return django_application(environ, start_response)
