"""Deploy settings, headers, limits, error pages and secrets."""

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from devtools.servers import app_servers, redis_server
from shop.orders.models import Order, OrderLine, OrderStatus
from shop.payments.models import WebhookEvent
from tests.conftest import WEBHOOK_URL, buy, cart_form, last_order, pay, post_event

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "k3y-" + "x7Yq9" * 12,
    "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    "STRIPE_SECRET_KEY": "sk_test_deploy_check",
    "STRIPE_WEBHOOK_SECRET": "whsec_deploy_check",
    "REDIS_URL": "redis://127.0.0.1:6399/0",
    "EMAIL_HOST": "smtp.example.com",
    "SHOP_BASE_URL": "https://shop.example.com",
    "SHOP_OWNER_EMAIL": "owner@shop.example.com",
}


def manage(*args, env):
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "SHOP_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": "sqlite:///:memory:",
            **env,
        },
        timeout=60,
    )


def production_settings(**extra):
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in ['SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', "
        "'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'ADMIN_URL', 'DEBUG', 'SECURE_PROXY_SSL_HEADER']}))"
    )
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "SHOP_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **PRODUCTION, **extra},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_deploy_check_passes_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_stripe_key_refuses_to_start_and_names_the_variable():
    env = {k: v for k, v in PRODUCTION.items() if k != "STRIPE_SECRET_KEY"}

    for command in (["check", "--deploy"], ["migrate", "--check"]):
        result = manage(*command, env=env)
        assert result.returncode != 0
        assert "STRIPE_SECRET_KEY is not set" in result.stderr
        assert "SHOP_DEMO_PAYMENTS" in result.stderr


def test_demo_payments_in_production_must_be_asked_for_and_are_warned_about():
    env = {k: v for k, v in PRODUCTION.items() if k != "STRIPE_SECRET_KEY"}

    result = manage("check", "--deploy", env={**env, "SHOP_DEMO_PAYMENTS": "true"})

    assert result.returncode == 0, result.stderr
    assert "shop.W001" in result.stderr and "Demo payments are on" in result.stderr


def test_deploy_check_warns_when_rate_limits_are_not_shared():
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    assert "shop.W002" in result.stderr and "REDIS_URL" in result.stderr


def test_deploy_check_fails_without_a_webhook_secret():
    env = {k: v for k, v in PRODUCTION.items() if k != "STRIPE_WEBHOOK_SECRET"}

    result = manage("check", "--deploy", env=env)

    assert result.returncode != 0
    assert "shop.E002" in result.stderr


def test_development_runs_demo_payments_with_no_setup():
    result = manage("check", env={"DJANGO_DEBUG": "true"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("unset", "warning"),
    [
        ("EMAIL_HOST", "shop.W003"),
        ("SHOP_BASE_URL", "shop.W004"),
        ("SHOP_OWNER_EMAIL", "shop.W005"),
    ],
)
def test_deploy_check_warns_about_emails_that_would_not_arrive(unset, warning):
    env = {key: value for key, value in PRODUCTION.items() if key != unset}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    assert warning in result.stdout + result.stderr


def test_production_defaults_are_https_only():
    s = production_settings()
    assert s["SECURE_SSL_REDIRECT"] and s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SECURE_HSTS_SECONDS"] >= 31536000
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["DEBUG"] is False


def test_ssl_redirect_can_be_switched_off_for_plain_http_on_loopback():
    s = production_settings(DJANGO_SECURE_SSL_REDIRECT="false")
    assert not s["SECURE_SSL_REDIRECT"] and not s["SESSION_COOKIE_SECURE"]


def test_admin_is_not_at_a_guessable_path_in_production():
    s = production_settings()
    assert s["ADMIN_URL"] != "admin/" and re.fullmatch(r"admin-[0-9a-f]{16}/", s["ADMIN_URL"])
    assert production_settings(DJANGO_ADMIN_URL="backoffice/")["ADMIN_URL"] == "backoffice/"
    printed = manage("admin_url", env=PRODUCTION)
    assert printed.stdout.strip() == "/" + s["ADMIN_URL"]


@pytest.mark.parametrize("key", ["", "short", "django-insecure-" + "x" * 50])
def test_production_refuses_to_start_without_a_real_secret_key(key):
    result = manage("check", env={**PRODUCTION, "DJANGO_SECRET_KEY": key})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_https_redirect_and_proxy_header(client, settings, products):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000

    plain = Client().get("/")
    proxied = Client().get("/", HTTP_X_FORWARDED_PROTO="https")

    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    assert proxied.status_code == 200
    assert "max-age=31536000" in proxied["Strict-Transport-Security"]


def test_security_headers_on_every_page(client, products):
    response = client.get("/")

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    for name, value in directives.items():
        if name != "form-action":  # the redirect to Stripe's hosted page after Buy
            assert "http" not in value, (name, value)
    assert response.cookies["csrftoken"]["httponly"]


def test_customer_cookie_is_httponly_and_same_site(client, products, demo):
    response = buy(client, products, 1, 0, 0)
    assert response.cookies["shop_customer"]["httponly"]
    assert response.cookies["shop_customer"]["samesite"] == "Lax"


def test_oversized_checkout_body_is_refused_before_parsing(client, products, demo):
    form = cart_form(products, 1, 0, 0) | {"padding": "x" * 20_000}

    response = client.post("/checkout/", form)

    assert response.status_code == 413
    assert Order.objects.count() == 0


def test_oversized_webhook_is_refused(client, fake_stripe):
    body = b'{"id": "evt_1", "padding": "' + b"x" * 300_000 + b'"}'
    response = client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body),
    )
    assert response.status_code == 413


def test_webhook_ip_allow_list(client, products, fake_stripe, settings):
    buy(client, products, 1, 0, 0)
    order = last_order()
    settings.STRIPE_WEBHOOK_ALLOWED_IPS = ["3.18.12.63"]
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    refused = post_event(client, fake_stripe, event)
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert not WebhookEvent.objects.exists()
    body = json.dumps(event).encode()
    allowed = client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body),
        REMOTE_ADDR="3.18.12.63",
    )

    assert refused.status_code == 403
    assert allowed.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID


def test_webhook_secret_and_api_key_never_reach_the_logs(client, products, fake_stripe, caplog):
    caplog.set_level(logging.DEBUG)
    buy(client, products, 1, 0, 0)
    order = last_order()
    pay(client, fake_stripe, order)
    post_event(client, fake_stripe, {"id": "evt_x"}, secret="whsec_wrong")
    fake_stripe.fail_next(3)
    buy(client, products, 2, 0, 0)

    logged = caplog.text
    assert fake_stripe.webhook_secret not in logged
    assert fake_stripe.api_key not in logged


@pytest.fixture
def rate_limits(settings):
    settings.RATELIMIT_ENABLE = True
    settings.CHECKOUT_RATE_PER_BROWSER = "3/m"
    settings.CHECKOUT_RATE_PER_IP = "5/m"
    cache.clear()
    yield
    cache.clear()


def test_checkout_rate_limit_per_browser_answers_429_page(client, products, demo, rate_limits):
    client.get("/")
    first = buy(client, products, 1, 0, 0)  # no customer cookie yet: counted by address only
    statuses = [buy(client, products, 1, 0, 0).status_code for _ in range(4)]
    limited = buy(client, products, 1, 0, 0)

    assert first.status_code == 303
    assert statuses == [303, 303, 303, 429]
    assert limited.status_code == 429
    assert limited["Retry-After"] == "60"
    assert "Too many attempts" in limited.content.decode()


def test_checkout_rate_limit_per_ip_covers_new_browsers(products, demo, rate_limits):
    browsers = [Client() for _ in range(6)]
    for browser in browsers:
        browser.get("/")  # each gets its own CSRF cookie, so its own per-browser bucket
    statuses = [buy(browser, products, 1, 0, 0).status_code for browser in browsers]

    assert statuses == [303] * 5 + [429]
    assert Order.objects.count() == 5


def test_per_browser_limit_is_not_reset_by_fresh_csrf_cookies(client, products, demo, settings):
    settings.RATELIMIT_ENABLE = True
    settings.CHECKOUT_RATE_PER_BROWSER = "3/m"
    settings.CHECKOUT_RATE_PER_IP = "1000/m"
    buy(client, products, 1, 0, 0)  # the browser now holds its signed customer cookie
    statuses = []
    for _ in range(6):
        token = secrets.token_hex(16)
        client.cookies[settings.CSRF_COOKIE_NAME] = token
        statuses.append(buy(client, products, 1, 0, 0).status_code)

    assert statuses == [303, 303, 303, 429, 429, 429]


def test_rate_limited_request_stores_nothing(client, products, demo, rate_limits):
    client.get("/")
    for _ in range(4):
        buy(client, products, 1, 0, 0)
    before = (Order.objects.count(), OrderLine.objects.count())

    assert buy(client, products, 5, 5, 5).status_code == 429
    assert (Order.objects.count(), OrderLine.objects.count()) == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_rate_limits_are_shared_across_app_servers_through_redis(products, tmp_path):
    with (
        redis_server() as redis_url,
        app_servers(
            2,
            {
                "REDIS_URL": redis_url,
                "CHECKOUT_RATE_PER_IP": "4/m",
                "CHECKOUT_RATE_PER_BROWSER": "100/m",
            },
            tmp_path,
        ) as urls,
    ):
        statuses = []
        for i in range(6):
            # A bad cart: counted by the limit, and no session or Stripe needed.
            session = requests.Session()
            page = session.get(urls[i % 2] + "/", timeout=10)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            response = session.post(
                urls[i % 2] + "/checkout/",
                timeout=10,
                allow_redirects=False,
                data={"csrfmiddlewaretoken": token, "quantity-1": "0"},
                headers={"Referer": urls[i % 2] + "/"},
            )
            statuses.append(response.status_code)

    assert statuses == [400, 400, 400, 400, 429, 429]


def test_custom_404_page(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "We could not find that page" in response.content.decode()


def test_custom_400_page_for_a_bad_host(db):
    response = Client(HTTP_HOST="evil.example").get("/")
    assert response.status_code == 400
    assert "Something in that request was not right" in response.content.decode()


def test_custom_403_page_for_a_csrf_failure(products):
    response = Client(enforce_csrf_checks=True).post("/checkout/", cart_form(products, 1, 0, 0))
    assert response.status_code == 403
    assert "press Buy again" in response.content.decode()


def test_custom_500_page_hides_everything(products, monkeypatch, settings):
    from shop.web import views

    def explode():
        raise RuntimeError(f"secret detail {settings.SECRET_KEY}")

    monkeypatch.setattr(views, "catalogue_for_storefront", explode)
    client = Client(raise_request_exception=False)

    response = client.get("/")

    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert (
        "secret detail" not in body and "Traceback" not in body and settings.SECRET_KEY not in body
    )


def test_admin_requires_staff(client, django_user_model):
    assert client.get("/admin/").status_code == 302
    user = django_user_model.objects.create_user("customer", password="pw-1234567")
    client.force_login(user)
    assert client.get("/admin/shop/order/").status_code == 302


SECRET_SHAPES = re.compile(
    r"(sk_live_[0-9A-Za-z]{16,}|rk_live_[0-9A-Za-z]{16,}|whsec_[0-9A-Za-z]{24,})"
)


def test_no_stripe_secret_is_committed():
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    leaks = []
    for name in filter(None, files.decode().split("\0")):
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".sqlite3"}:
            continue
        for match in SECRET_SHAPES.finditer(path.read_text(errors="ignore")):
            leaks.append(f"{name}: {match.group(0)[:12]}…")
    assert leaks == []


def test_secret_scanner_recognises_real_looking_secrets():
    assert SECRET_SHAPES.search("STRIPE_SECRET_KEY=sk_live_" + "a1B2c3D4e5F6g7H8i9")
    assert SECRET_SHAPES.search("whsec_" + "Zx9" * 10)
    assert not SECRET_SHAPES.search("whsec_test_secret")


def test_env_file_is_git_ignored():
    result = subprocess.run(["git", "check-ignore", ".env"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0


def test_success_page_of_a_settled_order_does_not_ask_stripe_again(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    pay(client, fake_stripe, order)
    url = f"/checkout/success/?session_id={order.checkout_session_id}"

    for _ in range(20):
        assert client.get(url).status_code == 200

    assert fake_stripe.requests_to("GET", "/v1/checkout/sessions") == []


def test_success_page_is_rate_limited_per_browser(client, products, fake_stripe, settings):
    settings.RATELIMIT_ENABLE = True
    settings.SUCCESS_RATE_PER_BROWSER = "5/m"
    settings.SUCCESS_RATE_PER_IP = "1000/m"
    cache.clear()
    buy(client, products, 1, 0, 0)
    url = f"/checkout/success/?session_id={last_order().checkout_session_id}"

    statuses = [client.get(url).status_code for _ in range(7)]

    assert statuses == [200] * 5 + [429] * 2
    assert len(fake_stripe.requests_to("GET", "/v1/checkout/sessions")) == 5


def test_pages_that_show_a_browsers_orders_are_private(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    pay(client, fake_stripe, order)

    storefront = client.get("/")
    success = client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    assert "private" in storefront["Cache-Control"]
    assert "Cookie" in storefront["Vary"]
    assert "private" in success["Cache-Control"]


@pytest.fixture
def login_limits(settings, django_user_model):
    settings.AXES_ENABLED = True
    django_user_model.objects.create_superuser("owner", "owner@example.com", "right-pass-123")
    django_user_model.objects.create_superuser("clerk", "clerk@example.com", "right-pass-456")


def admin_login(username, password, ip="198.51.100.7"):
    return Client(REMOTE_ADDR=ip).post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}
    )


def test_admin_login_is_locked_per_address_after_five_wrong_passwords(login_limits):
    statuses = [admin_login("owner", f"wrong-{i}").status_code for i in range(5)]

    assert statuses == [200] * 4 + [429]  # the form again with its error; the fifth locks
    assert admin_login("owner", "right-pass-123").status_code == 429
    assert admin_login("clerk", "right-pass-456").status_code == 429  # same address
    assert admin_login("clerk", "right-pass-456", ip="198.51.100.8").status_code == 302


def test_admin_login_is_locked_per_username_from_any_address(login_limits):
    for i in range(5):
        admin_login("owner", f"wrong-{i}", ip=f"203.0.113.{i}")

    locked = admin_login("owner", "right-pass-123", ip="203.0.113.99")

    assert locked.status_code == 429
    assert "Too many attempts" in locked.content.decode()


def test_admin_session_is_short_and_ends_with_the_browser(admin_client, settings):
    from django.contrib.sessions.models import Session

    response = admin_client.get("/admin/")
    session = Session.objects.get()

    assert response.status_code == 200
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
    assert session.expire_date - timezone.now() <= timedelta(hours=8)
