import re

import pytest

from kindstride.db import db
from kindstride.tenancy.services import sync_tenants
from tests.browser.conftest import screenshot
from tests.support.jobs import run_queued_jobs

pytestmark = pytest.mark.browser


def test_sign_up_confirm_and_sign_in_on_a_phone_in_two_brands(live_app, page, mailbox):
    app, port = live_app
    with app.app_context():
        sync_tenants(app.config["TENANTS_DIR"])
        db.session.commit()

    page.goto(f"http://techrun.localhost:{port}/")
    assert page.locator("html").get_attribute("lang") == "vi"
    assert page.get_by_role("link", name="Đăng ký").first.is_visible()
    techrun_header = page.locator(".ks-header").evaluate("e => getComputedStyle(e).backgroundColor")
    screenshot(page, "techrun-home")

    page.goto(f"http://shopfast.localhost:{port}/signup")
    shopfast_header = page.locator(".ks-header").evaluate("e => getComputedStyle(e).backgroundColor")
    assert techrun_header != shopfast_header  # two brands
    page.get_by_label("Your name").fill("Mai Tran")
    page.get_by_label("Email").fill("mai@example.com")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    assert page.get_by_text("at least 10 characters").first.is_visible()
    screenshot(page, "shopfast-signup-error")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Check your email").wait_for()

    run_queued_jobs(app)
    link = re.search(r"http://\S+/confirm/\S+", mailbox.wait_for(1)[0].get_content()).group(0)
    page.goto(link)
    page.get_by_role("button", name="Confirm my email").click()
    page.get_by_role("link", name="Mai Tran").wait_for()
    screenshot(page, "shopfast-signed-in")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill("mai@example.com")
    page.get_by_label("Password").fill("a long enough password")
    page.keyboard.press("Enter")  # forms work from the keyboard
    page.get_by_role("link", name="Mai Tran").wait_for()
