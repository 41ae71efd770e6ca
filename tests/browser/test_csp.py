"""The pages run under the strict CSP, and the tests would notice anything it blocked."""

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.django_db(transaction=True)


def test_pages_work_under_the_strict_csp_and_a_violation_would_fail_the_test(
    page: Page, products, problems
):
    response = page.goto("/")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    expect(page.locator("#cart-summary")).to_be_visible()  # shop.js ran
    assert page.locator("body").evaluate("b => getComputedStyle(b).display") == "flex"  # CSS
    assert problems.messages == []

    page.evaluate("""() => {
        document.body.insertAdjacentHTML("beforeend", "<p style='color: red'>inline style</p>");
        const script = document.createElement("script");
        script.textContent = "document.title = 'inline script ran'";
        document.body.append(script);
    }""")

    for _ in range(40):
        if len(problems.messages) >= 2:
            break
        page.wait_for_timeout(50)
    assert page.title() != "inline script ran"
    assert any("Content Security Policy" in m and "style" in m for m in problems.messages)
    assert any("Content Security Policy" in m and "script" in m for m in problems.messages)
    problems.messages.clear()  # caused on purpose; the fixture fails a test on any left over
