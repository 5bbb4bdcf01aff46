"""Donations end to end with both gateways: Stripe through the official library against localstripe,
VNPay against a fake speaking its documented protocol. Created, paid, webhook or IPN, ledger, receipt,
partial refund, ledger again; duplicates, replays and forgeries change nothing."""

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from kindstride.accounts import services as accounts
from kindstride.challenges.services import create_challenge
from kindstride.db import db
from kindstride.fundraising.services import add_beneficiary
from kindstride.ledger.services import problems
from kindstride.payments.models import Payment
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant, get_tenant, store_secret
from tests.support.fake_vnpay import start_fake_vnpay
from tests.support.jobs import run_queued_jobs
from tests.support.localstripe_server import start_localstripe

NOW = datetime.now(UTC).replace(microsecond=0)
STRIPE = {"publishable_key": "pk_test_kindstride", "secret_key": "sk_test_kindstride", "webhook_secret": "whsec_test"}


@pytest.fixture(scope="module")
def localstripe():
    server = start_localstripe()
    yield server
    server.stop()


@pytest.fixture
def vnpay():
    fake = start_fake_vnpay()
    yield fake
    fake.stop()


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def site(make_app, localstripe, vnpay, mailbox):
    """Two tenants on one live server: 'alpha' (USD, Stripe) reached as 127.0.0.1, 'beta' (VND, VNPay)
    reached as localhost — their custom domains, so gateways call back to the right tenant."""
    app = make_app(PLUGINS=["core_rules", "stripe", "vnpay"], GATEWAY_ENDPOINTS={
        "stripe.api_base": localstripe.url, "vnpay.payment_url": vnpay.payment_url, "vnpay.api_url": vnpay.api_url})
    server = _serve(app)
    base = f"http://{{host}}:{server.server_port}"
    tokens = {}
    with app.app_context():
        for slug, currency, gateway, domain in (("alpha", "USD", "stripe", "127.0.0.1"),
                                                ("beta", "VND", "vnpay", "localhost")):
            tenant = create_tenant(slug, slug.title(), "en", currency, "Asia/Ho_Chi_Minh")
            public = {"publishable_key": STRIPE["publishable_key"]} if gateway == "stripe" else {
                "tmn_code": vnpay.tmn_code}
            tenant.settings = {**tenant.settings, "plugins": ["core_rules", "stripe", "vnpay"],
                               "gateways": {gateway: public}, "contact_email": f"fund@{slug}.example"}
            from kindstride.tenancy.services import _set_domains

            _set_domains(tenant, [domain])
            with tenant_scope(tenant.id):
                if gateway == "stripe":
                    store_secret("gateway.stripe.secret_key", STRIPE["secret_key"])
                    store_secret("gateway.stripe.webhook_secret", STRIPE["webhook_secret"])
                else:
                    store_secret("gateway.vnpay.hash_secret", vnpay.hash_secret)
                admin = accounts.sign_up(f"admin@{slug}.example", "Admin", "correct horse battery")
                accounts.grant_role(admin, "admin")
                _record, tokens[slug] = accounts.create_api_token(admin, "money", ["read", "admin"], 30)
                challenge = create_challenge({
                    "slug": "run", "title": "Run for good", "sports": ["run"],
                    "registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
                    "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
                    "counting_start": (NOW - timedelta(days=1)).isoformat(),
                    "counting_end": (NOW + timedelta(days=9)).isoformat(), "preset": "vn-charity-run-2024"})
                add_beneficiary(challenge, {"name": "Children's Heart Fund"})
                db.session.commit()
    localstripe.configure_webhook("kindstride", f"{base.format(host='127.0.0.1')}/payments/stripe/webhook",
                                  STRIPE["webhook_secret"])
    yield {"app": app, "alpha": base.format(host="127.0.0.1"), "beta": base.format(host="localhost"),
           "tokens": tokens}
    server.shutdown()


def _donate(url, amount, currency, gateway, key, **extra):
    body = {"amount": amount, "currency": currency, "gateway": gateway, "donor_name": "Mai Tran",
            "donor_email": "mai@example.com", "idempotency_key": key, **extra}
    return requests.post(f"{url}/api/v1/challenges/run/donations", json=body, timeout=10)


def _money(url):
    return requests.get(f"{url}/api/v1/challenges/run/money", timeout=10).json()


def _payment(app, slug, reference):
    with app.app_context(), tenant_scope(get_tenant(slug).id):
        payment = db.session.scalar(sa.select(Payment).where(Payment.reference == reference))
        db.session.expunge(payment)
        return payment


def _wait_for(condition, seconds=15):
    """Poll for something another process does (localstripe's webhook), up to a deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _ledger_ok(app, slug):
    with app.app_context(), tenant_scope(get_tenant(slug).id):
        return problems()


def _stripe_event(payload):
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    signature = hmac.new(STRIPE["webhook_secret"].encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={stamp},v1={signature}", "Content-Type": "application/json"}


def test_card_donation_through_stripe_from_payment_to_partial_refund(site, localstripe, mailbox):
    app, url = site["app"], site["alpha"]
    started = _donate(url, 1050, "USD", "stripe", "click-0001", anonymous=True, message="Go team!")
    assert started.status_code == 201, started.text
    assert started.json()["client_secret"]
    double_click = _donate(url, 1050, "USD", "stripe", "click-0001", anonymous=True)
    assert double_click.json()["reference"] == started.json()["reference"]
    payment = _payment(app, "alpha", started.json()["reference"])
    assert _money(url)["donated"] == 0  # nothing counts before the gateway confirms

    status, intent = localstripe.pay(payment.gateway_ref, publishable_key=STRIPE["publishable_key"],
                                     secret_key=STRIPE["secret_key"])
    assert status == 200 and intent["status"] == "succeeded"
    assert _wait_for(lambda: _money(url)["donated"] == 1050), localstripe.log()
    assert _money(url)["total"] == 1050
    public = requests.get(f"{url}/api/v1/challenges/run/donations", timeout=10).json()
    assert public[0]["name"] is None and public[0]["amount"] == 1050  # anonymous stays anonymous

    run_queued_jobs(app)
    receipt = mailbox.wait_for(1)[0]
    assert receipt["To"] == "mai@example.com" and "receipt" in receipt["Subject"].lower()
    attachment = next(part for part in receipt.iter_attachments())
    assert attachment.get_content_type() == "application/pdf" and attachment.get_content().startswith(b"%PDF")

    # A replayed delivery of the same event, and a forged one, change nothing.
    replay, headers = _stripe_event({"id": "evt_replay", "type": "payment_intent.succeeded", "object": "event",
                                     "data": {"object": {"id": payment.gateway_ref, "object": "payment_intent"}}})
    assert requests.post(f"{url}/payments/stripe/webhook", data=replay, headers=headers, timeout=10).ok
    assert requests.post(f"{url}/payments/stripe/webhook", data=replay, headers=headers, timeout=10).ok
    forged = requests.post(f"{url}/payments/stripe/webhook", data=replay,
                           headers={**headers, "Stripe-Signature": "t=1,v1=00"}, timeout=10)
    assert forged.status_code == 400
    assert _money(url)["donated"] == 1050

    admin = {"Authorization": f"Bearer {site['tokens']['alpha']}"}
    too_much = requests.post(f"{url}/api/v1/payments/{payment.reference}/refunds", json={"amount": 5000},
                             headers=admin, timeout=10)
    assert too_much.status_code == 422 and "at most 1050" in too_much.json()["message"]
    refunded = requests.post(f"{url}/api/v1/payments/{payment.reference}/refunds", json={"amount": 300},
                             headers=admin, timeout=10)
    assert refunded.status_code == 201 and refunded.json()["refunded"] == 300
    assert _money(url)["donated"] == 750
    reconciliation = requests.get(f"{url}/api/v1/reconciliation", headers=admin, timeout=10).json()
    assert reconciliation == [{"reference": payment.reference, "gateway": "stripe", "gateway_status": "succeeded",
                               "gateway_amount": 1050, "gateway_refunded": 300, "ledger_captured": 1050,
                               "ledger_refunded": 300, "matches": True}]
    assert _ledger_ok(app, "alpha") == []
    # A client retrying with its Idempotency-Key refunds once; a malformed key is refused by name.
    refunds = f"{url}/api/v1/payments/{payment.reference}/refunds"
    retried = [requests.post(refunds, json={"amount": 100}, headers={**admin, "Idempotency-Key": "retry-0001"},
                             timeout=10) for _ in range(2)]
    assert [r.status_code for r in retried] == [201, 201] and retried[-1].json()["refunded"] == 400
    bad_key = requests.post(refunds, json={"amount": 100}, headers={**admin, "Idempotency-Key": "x"}, timeout=10)
    assert bad_key.status_code == 422 and "idempotency_key" in bad_key.json()["message"]
    assert _money(url)["donated"] == 650 and _ledger_ok(app, "alpha") == []


def test_declined_card_counts_nothing(site, localstripe):
    url = site["alpha"]
    started = _donate(url, 2500, "USD", "stripe", "click-0002").json()
    payment = _payment(site["app"], "alpha", started["reference"])
    status, _body = localstripe.pay(payment.gateway_ref, publishable_key=STRIPE["publishable_key"],
                                    secret_key=STRIPE["secret_key"], card="4000000000000341")
    assert status == 402
    assert _wait_for(lambda: requests.get(f"{url}/api/v1/payments/{payment.reference}", timeout=10)
                     .json()["status"] == "failed")
    assert _money(url)["donated"] == 0


def test_vnpay_donation_by_return_and_ipn_exact_in_vnd(site, vnpay):
    app, url = site["app"], site["beta"]
    started = _donate(url, 50_000, "VND", "vnpay", "click-vnd-01")
    assert started.status_code == 201, started.text
    # The donor pays on VNPay's page and their browser comes back to us.
    page = requests.get(started.json()["redirect_url"], allow_redirects=False, timeout=10)
    assert page.status_code == 302
    back = requests.get(page.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302 and "/donations/" in back.headers["Location"]
    assert _money(url)["donated"] == 50_000
    payment = _payment(app, "beta", started.json()["reference"])
    # VNPay's IPN for the same payment: already confirmed, counted once.
    answer = vnpay.send_ipn(payment.gateway_ref, f"{url}/payments/vnpay/webhook")
    assert answer.json()["RspCode"] == "02"
    assert _money(url)["donated"] == 50_000

    second = _donate(url, 120_000, "VND", "vnpay", "click-vnd-02").json()
    requests.get(second["redirect_url"], allow_redirects=False, timeout=10)  # paid; the browser never returns
    second_payment = _payment(app, "beta", second["reference"])
    tampered = vnpay.send_ipn(second_payment.gateway_ref, f"{url}/payments/vnpay/webhook", tamper=True)
    assert tampered.json()["RspCode"] == "97"
    assert _money(url)["donated"] == 50_000
    confirmed = vnpay.send_ipn(second_payment.gateway_ref, f"{url}/payments/vnpay/webhook")
    assert confirmed.json()["RspCode"] == "00"
    assert _money(url)["donated"] == 170_000

    admin = {"Authorization": f"Bearer {site['tokens']['beta']}"}
    refunded = requests.post(f"{url}/api/v1/payments/{second_payment.reference}/refunds",
                             json={"amount": 20_000}, headers=admin, timeout=10)
    assert refunded.status_code == 201, refunded.text
    assert _money(url)["donated"] == 150_000
    assert _ledger_ok(app, "beta") == []


def test_bad_donations_are_refused_with_the_field_named(site):
    url = site["beta"]
    for extra, message in (
        ({"amount": -5}, "amount:"), ({"amount": 10.5}, "amount:"), ({"amount": 100}, "smallest donation"),
        ({"currency": "USD"}, "currency: donations here are in VND"), ({"gateway": "paypal"}, "gateway:"),
        ({"team_id": 999999}, "team_id: not part of this challenge"),
    ):
        body = {"amount": 50_000, "currency": "VND", "gateway": "vnpay", "idempotency_key": "bad-input-1", **extra}
        response = _donate(url, body.pop("amount"), body.pop("currency"), body.pop("gateway"),
                           body.pop("idempotency_key"), **body)
        assert response.status_code == 422 and message in response.json()["message"], (extra, response.text)
    # A payment reference of another tenant is not found here.
    started = _donate(site["alpha"], 1050, "USD", "stripe", "click-0009").json()
    assert requests.get(f"{url}/api/v1/payments/{started['reference']}", timeout=10).status_code == 404


def test_an_entry_ticket_completes_the_registration_only_when_paid(site, vnpay):
    app, url = site["app"], site["beta"]
    with app.app_context(), tenant_scope(get_tenant("beta").id):
        runner = accounts.sign_up("runner@beta.example", "Runner", "correct horse battery")
        _record, token = accounts.create_api_token(runner, "app", ["read", "activities:write"], 30)
        create_challenge({
            "slug": "final", "title": "Ticketed final", "sports": ["run"], "entry_fee": 200_000,
            "registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=1)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat(), "preset": "vn-charity-run-2024"})
        db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    unpaid = requests.post(f"{url}/api/v1/challenges/final/registrations", json={}, headers=headers, timeout=10)
    assert unpaid.status_code == 422 and "entry fee" in unpaid.json()["message"]
    registered = requests.post(f"{url}/api/v1/challenges/final/registrations", headers=headers, timeout=10,
                               json={"gateway": "vnpay", "idempotency_key": "ticket-0001"})
    assert registered.status_code == 201, registered.text
    assert registered.json()["status"] == "pending_payment" and registered.json()["payment_redirect_url"]
    run = {"sport": "run", "start": (NOW - timedelta(hours=3)).isoformat(), "moving_s": 1800, "distance_m": 6000,
           "has_gps": True, "split_paces_s_per_km": [300] * 6}
    assert requests.post(f"{url}/api/v1/activities", json=run, headers=headers, timeout=10).status_code == 201
    run_queued_jobs(app)
    board = requests.get(f"{url}/api/v1/challenges/final/leaderboard", timeout=10).json()
    assert board[0]["distance_m"] == 0  # not counted while the ticket is unpaid

    requests.get(registered.json()["payment_redirect_url"], allow_redirects=False, timeout=10)
    payment = _payment(app, "beta", registered.json()["payment_reference"])
    assert vnpay.send_ipn(payment.gateway_ref, f"{url}/payments/vnpay/webhook").json()["RspCode"] == "00"
    mine = requests.get(f"{url}/api/v1/challenges/final/registration", headers=headers, timeout=10).json()
    assert mine["status"] == "active"
    assert requests.get(f"{url}/api/v1/challenges/final/leaderboard", timeout=10).json()[0]["distance_m"] == 6000
    with app.app_context(), tenant_scope(get_tenant("beta").id):
        from kindstride.ledger.services import balance

        assert balance("entry_fees:") == -200_000 and problems() == []
