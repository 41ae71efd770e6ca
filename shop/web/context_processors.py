from typing import Any

from django.http import HttpRequest

from shop.payments import demo_mode


def shop(request: HttpRequest) -> dict[str, Any]:
    return {"demo_mode": demo_mode()}
