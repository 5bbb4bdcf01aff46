"""A donor on a phone gives by card, against localstripe: the challenge page's money block, the donate form,
Stripe's card page (a declined card first, then Visa 4242), the thank-you page, and the total grown.

localstripe's Stripe.js stand-in (localstripe-v3.js) draws a card form (plain inputs with the placeholders
number, exp_month, exp_year, cvc, postal_code) and can make card tokens with the publishable key, but it has
no Payment Element API: no `confirmPayment`, and its element never says "ready". Its server cannot confirm a
PaymentIntent with the publishable key either. So the test serves localstripe's script with a small
completion (`PAYMENT_ELEMENT_JS`) doing what Stripe.js does: `confirmPayment` tokenises the typed card with
localstripe's own `createToken`, has the intent confirmed with that card (by `_confirm_route`, standing in for
Stripe's servers with the secret key, as `LocalStripe.pay` does), and sends the browser to the return_url with
`payment_intent` and `redirect_status`, or answers `{error}` for a declined card.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from kindstride.challenges import services as challenges
from kindstride.db import db
from tests.browser.conftest import load_sites, screenshot, unlabelled_fields
from tests.support.localstripe_server import DECLINED, VISA, start_localstripe

pytestmark = pytest.mark.browser

SLUG = "shopfast"  # English, USD
STRIPE = {"publishable_key": "pk_test_kindstride", "secret_key": "sk_test_kindstride", "webhook_secret": "whsec_test"}
NOW = datetime.now(UTC).replace(microsecond=0)
CONFIRM_PATH = "/_kindstride_test/confirm"

PAYMENT_ELEMENT_JS = """
;(function () {
  "use strict";
  // The Payment Element's "ready": localstripe's element is ready once mounted.
  const mount = Element.prototype.mount;
  Element.prototype.mount = function (target) {
    mount.call(this, target);
    setTimeout(() => (this.listeners.ready || []).forEach((handler) => handler({elementType: "payment"})), 0);
  };
  const makeStripe = window.Stripe;
  window.Stripe = function (key, options) {
    const stripe = makeStripe(key, options);
    const elements = stripe.elements;
    stripe.elements = function (settings) {
      const group = elements(settings);
      group._clientSecret = (settings || {}).clientSecret;
      return group;
    };
    stripe.confirmPayment = async function ({elements, confirmParams}) {
      const element = elements.getElement("payment");
      const tokenised = await stripe.createToken(element);
      if (tokenised.error) {
        return {error: tokenised.error};
      }
      const response = await fetch(LOCALSTRIPE_BASE_API + "%(confirm)s", {method: "POST",
        body: JSON.stringify({client_secret: elements._clientSecret, payment_method: tokenised.token.card.id})});
      const intent = await response.json();
      if (intent.error) {
        return {error: intent.error};
      }
      const back = new URL(confirmParams.return_url);
      back.searchParams.set("payment_intent", intent.id);
      back.searchParams.set("payment_intent_client_secret", elements._clientSecret);
      back.searchParams.set("redirect_status", intent.status === "succeeded" ? "succeeded" : "failed");
      window.location.assign(back.toString());
      return new Promise(() => {});  // Stripe.js leaves the page
    };
    return stripe;
  };
})();
""".replace("%(confirm)s", CONFIRM_PATH)


@pytest.fixture(scope="module")
def localstripe():
    server = start_localstripe()
    yield server
    server.stop()


@pytest.fixture
def stripe_sites(serve_app, localstripe):
    """The demo tenants on a live app that takes card payments through localstripe; ShopFast takes them."""
    app, port = serve_app(PLUGINS=["core_rules", "stripe"], GATEWAY_ENDPOINTS={
        "stripe.api_base": localstripe.url, "stripe.js_url": f"{localstripe.url}/js.stripe.com/v3/"})
    sites = load_sites(app, port)
    from kindstride.fundraising.services import add_beneficiary
    from kindstride.tenancy.models import Tenant
    from kindstride.tenancy.services import store_secret

    with sites.scope(SLUG):
        tenant = db.session.get(Tenant, sites.tenant(SLUG)["id"])
        tenant.settings = {**tenant.settings, "plugins": ["core_rules", "stripe"],
                           "gateways": {"stripe": {"publishable_key": STRIPE["publishable_key"]}}}
        store_secret("gateway.stripe.secret_key", STRIPE["secret_key"])
        store_secret("gateway.stripe.webhook_secret", STRIPE["webhook_secret"])
        challenge = challenges.create_challenge({
            "slug": "sellers-run", "title": "Run for small sellers", "sports": ["run"], "goal_km": 500,
            "registration_opens_at": (NOW - timedelta(days=3)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=3)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat(), "preset": "vn-charity-run-2024"})
        add_beneficiary(challenge, {"name": "Digital Skills Fund"})
        db.session.commit()
    return sites


def _stripe_js(localstripe, route):
    """localstripe's Stripe.js stand-in, completed with the Payment Element's confirmPayment."""
    original = requests.get(f"{localstripe.url}/js.stripe.com/v3/", timeout=5)
    route.fulfill(status=200, content_type="application/javascript", body=original.text + PAYMENT_ELEMENT_JS)


def _confirm_route(localstripe, route):
    """Confirm a PaymentIntent with the card the browser tokenised, as Stripe does for the client secret."""
    asked = json.loads(route.request.post_data or "{}")
    secret = str(asked.get("client_secret") or "")
    intent_id = secret.partition("_secret_")[0]
    intent = requests.get(f"{localstripe.url}/v1/payment_intents/{intent_id}", auth=(STRIPE["secret_key"], ""),
                          timeout=5)
    if intent.status_code != 200 or intent.json().get("client_secret") != secret:
        status, body = 401, {"error": {"message": "No such payment_intent for this client secret."}}
    else:
        status, body = localstripe.pay(intent_id, publishable_key=STRIPE["publishable_key"],
                                       secret_key=STRIPE["secret_key"], card=asked["payment_method"])
    route.fulfill(status=status, content_type="application/json", body=json.dumps(body),
                  headers={"Access-Control-Allow-Origin": "*"})


def _money(page, term):
    return page.locator("section.ks-money div", has=page.locator("dt", has_text=term)).locator("dd").inner_text()


def _type_card(page, number):
    card = page.locator("#ks-payment-element")
    for placeholder, value in (("number", number), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123"),
                               ("postal_code", "10000")):
        card.locator(f"input[placeholder='{placeholder}']").fill(value)


def _to_the_card_page(page, sites, localstripe, t, screenshots=False):
    """From the challenge page through the donate form ($25 to a charity) to Stripe's card page."""
    page.route(f"{localstripe.url}/js.stripe.com/v3/", lambda route: _stripe_js(localstripe, route))
    page.route(f"{localstripe.url}{CONFIRM_PATH}", lambda route: _confirm_route(localstripe, route))
    page.goto(sites.url(SLUG, "/challenges/sellers-run"))
    assert _money(page, t("Donated")) == sites.money(SLUG, 0)  # nothing donated yet
    before = _money(page, t("Total raised"))
    if screenshots:
        screenshot(page, "shopfast-donor-01-challenge")
    page.locator("section.ks-money").get_by_role("link", name=t("Donate")).click()

    page.get_by_role("heading", name=t("Donate to %(title)s", title="Run for small sellers")).wait_for()
    assert unlabelled_fields(page, "main") == []
    page.get_by_label(t("Another amount, in %(currency)s", currency="USD")).fill("25")
    page.get_by_label(t("Give to")).select_option(label="Digital Skills Fund")
    page.get_by_label(t("Your name")).fill("Mai Tran")
    page.get_by_label(t("Your email")).fill("mai@example.com")
    page.get_by_label(t("A message with your gift (optional, shown publicly)")).fill("Go sellers!")
    assert page.get_by_label("Card (Stripe)").is_checked()
    if screenshots:
        screenshot(page, "shopfast-donor-02-donate-form")
    page.get_by_role("button", name=t("Continue to payment")).click()

    page.get_by_role("heading", name=t("Pay by card")).wait_for()
    pay = page.get_by_role("button", name=t("Pay %(amount)s", amount=sites.money(SLUG, 2500)))
    page.locator("#ks-payment-element input[placeholder='number']").wait_for()  # localstripe's card form
    assert pay.is_enabled()  # the element said it is ready
    assert page.locator(".ks-js-note").is_hidden()  # "needs JavaScript" is gone: it runs
    return pay, before


def test_a_donor_pays_by_card_and_the_total_grows(stripe_sites, localstripe, page):
    sites = stripe_sites
    t = lambda message, **params: sites.t(SLUG, message, **params)  # noqa: E731
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    pay, before = _to_the_card_page(page, sites, localstripe, t, screenshots=True)

    _type_card(page, VISA)  # 4242 4242 4242 4242
    screenshot(page, "shopfast-donor-03-card")
    pay.click()
    page.get_by_role("heading", name=t("Thank you!")).wait_for()
    assert page.locator(".ks-big").inner_text() == sites.money(SLUG, 2500)
    screenshot(page, "shopfast-donor-04-thank-you")

    # The total grew by the gift, and the gift is listed under the donor's name.
    page.get_by_role("link", name=t("Back to %(title)s", title="Run for small sellers")).click()
    assert _money(page, t("Donated")) == sites.money(SLUG, 2500)
    assert _money(page, t("Total raised")) != before
    gift = page.locator("ul.ks-donations li").first
    assert "Mai Tran" in gift.inner_text() and sites.money(SLUG, 2500) in gift.inner_text()
    assert "Go sellers!" in gift.inner_text()
    assert "Digital Skills Fund" in page.locator("section.ks-money table").inner_text()
    screenshot(page, "shopfast-donor-05-total-grown")
    assert problems == []


def test_a_declined_card_says_so_and_charges_nothing(stripe_sites, localstripe, page):
    sites = stripe_sites
    t = lambda message, **params: sites.t(SLUG, message, **params)  # noqa: E731
    pay, _before = _to_the_card_page(page, sites, localstripe, t)
    _type_card(page, DECLINED)
    pay.click()
    status = page.get_by_role("status").filter(has_text="declined")
    status.wait_for()  # Stripe's message, announced
    assert pay.is_enabled()  # another card may be tried (localstripe itself cannot retry an intent)
    screenshot(page, "shopfast-donor-06-card-declined")
    page.goto(sites.url(SLUG, "/challenges/sellers-run"))
    assert _money(page, t("Donated")) == sites.money(SLUG, 0)
