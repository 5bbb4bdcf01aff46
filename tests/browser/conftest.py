"""Browser tests: Debian's Chromium, driven by Playwright, against the app served on 127.0.0.1.

Tenant sites are reached as http://<slug>.localhost:<port>: Chromium resolves *.localhost to loopback.
Screenshots of key pages go to test-artifacts/screenshots/.
"""

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("KINDSTRIDE_REQUIRE_SERVICES") == "1":
            pytest.fail("Chromium is required for the browser tests: apt-get install chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def serve_app(make_app):
    """Start the app (with extra settings) on a real HTTP server on 127.0.0.1: `serve_app(**config)` returns
    (app, port); the servers stop at the end of the test."""
    running = []

    def serve(**config):
        app = make_app(BASE_DOMAIN="localhost", **config)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return app, server.server_port

    yield serve
    for server, thread in running:
        server.shutdown()
        thread.join()


@pytest.fixture
def live_app(serve_app):
    """The app on a real HTTP server on 127.0.0.1; yields (app, port)."""
    return serve_app()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # From the top: a sticky header (ShopFast's) is drawn where the page was scrolled to, mid-picture.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def desktop_page(browser):
    """A desktop-sized page, for the admin console."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


PASSWORD = "correct horse battery"


class Sites:
    """The demo tenants (tenants/*/tenant.toml) on the live server: their addresses, data made through the
    services, and the words their pages use (each tenant's own language, from the app's catalogues)."""

    def __init__(self, app, port):
        self.app, self.port = app, port

    def url(self, slug, path="/"):
        return f"http://{slug}.localhost:{self.port}{path}"

    def host(self, slug):
        return f"{slug}.localhost"

    def tenant(self, slug):
        from kindstride.tenancy.services import get_tenant

        with self.app.app_context():
            tenant = get_tenant(slug)
            return {"id": tenant.id, "locale": tenant.locale, "currency": tenant.currency,
                    "timezone": tenant.timezone}

    @contextlib.contextmanager
    def scope(self, slug):
        """An app context in the tenant's scope, for the services; commit inside."""
        from kindstride.tenancy.scope import tenant_scope

        tenant_id = self.tenant(slug)["id"]
        with self.app.app_context(), tenant_scope(tenant_id):
            yield

    def t(self, slug, message, **params):
        """`message` as the tenant's pages show it (its translation when the catalogue has one)."""
        from flask_babel import force_locale, gettext

        with self.app.test_request_context(), force_locale(self.tenant(slug)["locale"]):
            return gettext(message, **params)

    def money(self, slug, minor):
        """An amount in minor units of the tenant's currency, as its pages show it."""
        from flask_babel import force_locale

        from kindstride.fundraising.receipts import money

        tenant = self.tenant(slug)
        with self.app.test_request_context(), force_locale(tenant["locale"]):
            return money(minor, tenant["currency"])

    def user(self, slug, email, name, roles=("participant",), password=PASSWORD):
        """A confirmed account on the tenant; returns its id."""
        from kindstride.accounts import services as accounts
        from kindstride.db import db, utcnow

        with self.scope(slug):
            user = accounts.sign_up(email, name, password)
            user.email_confirmed_at = utcnow()
            for role in roles:
                accounts.grant_role(user, role)
            db.session.commit()
            return user.id

    def api_headers(self, slug, user_id):
        from kindstride.accounts import services as accounts
        from kindstride.accounts.models import User
        from kindstride.db import db

        with self.scope(slug):
            _record, token = accounts.create_api_token(db.session.get(User, user_id), "browser tests",
                                                       ["read", "activities:write"], 30)
            db.session.commit()
        return {"Authorization": f"Bearer {token}"}

    def api(self, slug):
        """A test client for the tenant's REST API (the same app the browser talks to)."""
        return self.app.test_client().on(self.host(slug))


def load_sites(app, port):
    """The demo tenants loaded from tenants/ into a live app."""
    from kindstride.db import db
    from kindstride.tenancy.services import sync_tenants

    with app.app_context():
        sync_tenants(app.config["TENANTS_DIR"])
        db.session.commit()
    return Sites(app, port)


@pytest.fixture
def sites(live_app):
    """The demo tenants on the live app."""
    return load_sites(*live_app)


def sign_in(page, sites, slug, email, name, password=PASSWORD):
    """Sign in through the tenant's sign-in form."""
    page.goto(sites.url(slug, "/signin"))
    page.get_by_label(sites.t(slug, "Email")).fill(email)
    page.get_by_label(sites.t(slug, "Password")).fill(password)
    page.get_by_role("button", name=sites.t(slug, "Sign in")).click()
    page.get_by_role("link", name=name, exact=True).wait_for()


# The form fields of a page (or of the part `scope` selects) that have no accessible name of their own:
# no <label> (for= or wrapping) with text, no aria-label, no aria-labelledby naming elements with text.
# Hidden inputs, buttons and fields that are not rendered are left out. Each is described as
# "<tag type> name=... id=...".
_UNLABELLED_JS = """
(root) => {
  const text = (element) => (element && element.textContent || "").trim();
  const fields = root.querySelectorAll("input, select, textarea");
  const missing = [];
  for (const field of fields) {
    const type = (field.getAttribute("type") || "").toLowerCase();
    if (["hidden", "submit", "button", "reset", "image"].includes(type)) continue;
    if (!field.getClientRects().length) continue;  // not rendered (display: none, closed <details>)
    const byLabel = Array.from(field.labels || []).some((label) => text(label));
    const byAria = (field.getAttribute("aria-label") || "").trim() !== "";
    const byIds = (field.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
      .some((id) => text(document.getElementById(id)));
    if (!(byLabel || byAria || byIds)) {
      missing.push(`<${field.tagName.toLowerCase()}${type ? " " + type : ""}> name=${field.name} id=${field.id}`);
    }
  }
  return missing;
}
"""


def unlabelled_fields(page, scope="body"):
    return page.locator(scope).first.evaluate(_UNLABELLED_JS)


def visible_fields(page, scope="body"):
    """How many rendered form fields (not hidden inputs or buttons) the page or `scope` has."""
    return page.locator(scope).first.evaluate("""(root) => Array.from(root.querySelectorAll("input, select, textarea"))
        .filter((f) => !["hidden", "submit", "button", "reset", "image"].includes((f.type || "").toLowerCase()))
        .filter((f) => f.getClientRects().length).length""")


def tab_to(page, selector, presses=60):
    """Press Tab until the focused element matches `selector`; each stop must show a focus outline.

    Returns the number of presses. Fails when the element is never reached (it is not keyboard-focusable,
    or comes before the current focus)."""
    for count in range(1, presses + 1):
        page.keyboard.press("Tab")
        state = page.evaluate("""(selector) => {
            const el = document.activeElement;
            const style = el ? getComputedStyle(el) : null;
            return {matches: !!el && el.matches(selector),
                    outlined: !!style && ((style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
                                          || style.boxShadow !== "none"),
                    what: el ? el.outerHTML.slice(0, 120) : ""};
        }""", selector)
        assert state["outlined"], f"no visible focus indicator on {state['what']}"
        if state["matches"]:
            return count
    raise AssertionError(f"{selector} is not reached with Tab in {presses} presses")
