"""The Stripe gateway against localstripe (tests/support/localstripe_server.py), at the contract's level.

localstripe's signed webhooks are caught by a small HTTP receiver here and checked through
`verify_webhook`; a recording proxy in front of localstripe shows which key each call carries and
plays Stripe's failures (5xx, declines, refused keys).
"""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass

import pytest
import requests
import stripe
from babel.numbers import get_currency_precision
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from kindstride.payments.contract import (
    FAILED,
    PENDING,
    REQUIRES_ACTION,
    SUCCEEDED,
    Credentials,
    GatewayError,
    GatewayUnavailable,
    PaymentRequest,
    SignatureError,
)
from rules_plugins.gateways import stripe_gateway
from rules_plugins.gateways.stripe_gateway import CURRENCIES, ZERO_DECIMAL, StripeGateway, StripeParams, stripe_amount
from tests.support.localstripe_server import DECLINED, THREE_D_SECURE, VISA, free_port, start_localstripe

WEBHOOK_SECRET = "whsec_kindstride_test_endpoint"
gateway = StripeGateway()


# -- servers ------------------------------------------------------------------------------------------------


class _Server:
    def __init__(self, app, name):
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=name, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class Delivery:
    headers: dict
    body: bytes


class WebhookReceiver(_Server):
    """Keeps every POST localstripe makes, exactly as received."""

    def __init__(self):
        self.deliveries: list[Delivery] = []
        self._arrived = threading.Condition()
        super().__init__(self._app, "stripe-webhooks")

    @Request.application
    def _app(self, request):
        with self._arrived:
            self.deliveries.append(Delivery(dict(request.headers), request.get_data()))
            self._arrived.notify_all()
        return Response("{}", 200, mimetype="application/json")

    def wait_for(self, gateway_ref, kind, credentials, timeout=10):
        """The first delivery that verifies and is `kind` about `gateway_ref`, with its WebhookEvent."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._arrived:
            while True:
                for delivery in self.deliveries[seen:]:
                    event = gateway.verify_webhook(delivery.headers, delivery.body, {}, credentials)
                    if (event.gateway_ref, event.kind) == (gateway_ref, kind):
                        return delivery, event
                seen = len(self.deliveries)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {kind} webhook for {gateway_ref} within {timeout}s")
                self._arrived.wait(remaining)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    key: str | None
    idempotency_key: str | None


class RecordingProxy(_Server):
    """Forwards to localstripe, noting each call's key; `script` answers the next calls itself."""

    def __init__(self, target):
        self.target = target
        self.calls: list[Call] = []
        self.script: list[tuple[int, dict]] = []
        super().__init__(self._app, "stripe-proxy")

    @Request.application
    def _app(self, request):
        authorization = request.headers.get("Authorization", "")
        self.calls.append(Call(request.method, request.path, authorization.removeprefix("Bearer ") or None,
                               request.headers.get("Idempotency-Key")))
        if self.script:
            status, body = self.script.pop(0)
            return Response(json.dumps(body), status, mimetype="application/json")
        query = request.query_string.decode()
        upstream = requests.request(
            request.method, f"{self.target}{request.path}{'?' + query if query else ''}", data=request.get_data(),
            headers={name: value for name, value in request.headers.items()
                     if name in ("Authorization", "Content-Type", "Idempotency-Key", "Stripe-Version")},
            timeout=10)
        return Response(upstream.content, upstream.status_code, content_type=upstream.headers.get("Content-Type"))


@pytest.fixture(scope="module")
def localstripe():
    server = start_localstripe()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhooks(localstripe):
    receiver = WebhookReceiver()
    localstripe.configure_webhook("kindstride-tests", f"{receiver.url}/webhooks/stripe", WEBHOOK_SECRET)
    yield receiver
    receiver.stop()


@pytest.fixture
def proxy(localstripe):
    server = RecordingProxy(localstripe.url)
    yield server
    server.stop()


def tenant(api_base, name="a", webhook_secret=WEBHOOK_SECRET):
    return Credentials({"publishable_key": f"pk_test_tenant{name}", "secret_key": f"sk_test_tenant{name}",
                        "webhook_secret": webhook_secret, "api_base": api_base})


@pytest.fixture
def creds(localstripe):
    return tenant(localstripe.url)


_references = iter(range(1, 10**6))


def request_for(amount, currency, description="Donation to Run for Rivers"):
    return PaymentRequest(reference=f"ks1-donati-{time.time_ns()}-{next(_references)}", amount=amount,
                          currency=currency, description=description, return_url="https://a.kindstride.test/return",
                          notify_url="https://a.kindstride.test/webhooks/stripe")


def on_the_wire(localstripe, creds, intent_id):
    """The PaymentIntent as localstripe stores it (what the gateway sent), read past the gateway."""
    response = requests.get(f"{localstripe.url}/v1/payment_intents/{intent_id}",
                            auth=(creds.values["secret_key"], ""), timeout=5)
    response.raise_for_status()
    return response.json()


def stripe_signature(payload: bytes, secret=WEBHOOK_SECRET, timestamp=None):
    """A Stripe-Signature header as Stripe computes it: HMAC-SHA256 of "<t>.<body>" keyed with the secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def pay(localstripe, creds, created, card=VISA):
    return localstripe.pay(created.gateway_ref, publishable_key=creds.values["publishable_key"],
                           secret_key=creds.values["secret_key"], card=card)


# -- amounts and currencies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", CURRENCIES)
def test_our_minor_unit_is_stripes_unit_for_every_offered_currency(currency):
    # CLDR's digits (what kindstride formats with) against Stripe's convention for the currency.
    assert get_currency_precision(currency) == (0 if currency in ZERO_DECIMAL else 2)
    assert stripe_amount(12345, currency) == 12345


@pytest.mark.parametrize("currency", ["ISK", "HUF", "TWD", "UGX", "MGA", "KWD", "BHD", "XYZ"])
def test_currencies_stripe_counts_differently_are_refused_before_any_call(currency, proxy):
    credentials = tenant(proxy.url)
    with pytest.raises(GatewayError, match=currency):
        gateway.create_payment(request_for(5000, currency), credentials)
    assert proxy.calls == []
    assert currency not in gateway.currencies


@pytest.mark.parametrize(("amount", "currency"), [(1050, "USD"), (50000, "VND")])
def test_card_payment_succeeds_and_its_signed_webhook_verifies(localstripe, webhooks, creds, amount, currency):
    request = request_for(amount, currency)
    created = gateway.create_payment(request, creds)

    assert created.gateway_ref.startswith("pi_")
    assert created.client_secret.startswith(f"{created.gateway_ref}_secret_")
    assert created.status == PENDING and created.redirect_url is None
    sent = on_the_wire(localstripe, creds, created.gateway_ref)
    # USD 1050 is 1050 cents on the wire; VND 50000 is 50000 (zero-decimal), never multiplied.
    assert (sent["amount"], sent["currency"]) == (amount, currency.lower())
    assert sent["metadata"] == {"reference": request.reference}
    assert sent["description"] == "Donation to Run for Rivers"
    assert gateway.fetch_payment(created.gateway_ref, creds).status == PENDING  # no card yet

    status_code, body = pay(localstripe, creds, created)
    assert (status_code, body["status"]) == (200, "succeeded")

    delivery, event = webhooks.wait_for(created.gateway_ref, "payment_intent.succeeded", creds)
    assert event.event_id.startswith("evt_")
    assert delivery.headers["Stripe-Signature"].startswith("t=")
    status = gateway.fetch_payment(event.gateway_ref, creds)
    assert status.status == SUCCEEDED
    assert (status.amount, status.currency) == (amount, currency)
    assert (status.fee, status.refunded, status.failure_message) == (0, 0, None)


def test_declined_card_fails_with_the_decline_message(localstripe, webhooks, creds):
    created = gateway.create_payment(request_for(2500, "EUR"), creds)
    status_code, body = pay(localstripe, creds, created, card=DECLINED)
    assert (status_code, body["error"]["message"]) == (402, "Your card was declined.")

    _, event = webhooks.wait_for(created.gateway_ref, "payment_intent.payment_failed", creds)
    status = gateway.fetch_payment(event.gateway_ref, creds)
    assert status.status == FAILED
    assert status.failure_message == "Your card was declined."
    assert (status.amount, status.currency) == (2500, "EUR")


def test_three_d_secure_requires_action_until_the_payer_authenticates(localstripe, webhooks, creds):
    created = gateway.create_payment(request_for(3000, "SGD"), creds)
    status_code, body = pay(localstripe, creds, created, card=THREE_D_SECURE)
    assert (status_code, body["status"]) == (200, "requires_action")
    status = gateway.fetch_payment(created.gateway_ref, creds)
    assert (status.status, status.amount, status.failure_message) == (REQUIRES_ACTION, 3000, None)

    localstripe.authenticate(created.gateway_ref, created.client_secret,
                             publishable_key=creds.values["publishable_key"], success=True)
    webhooks.wait_for(created.gateway_ref, "payment_intent.succeeded", creds)
    assert gateway.fetch_payment(created.gateway_ref, creds).status == SUCCEEDED


def test_failed_three_d_secure_is_a_failed_payment(localstripe, creds):
    created = gateway.create_payment(request_for(3000, "SGD"), creds)
    pay(localstripe, creds, created, card=THREE_D_SECURE)
    localstripe.authenticate(created.gateway_ref, created.client_secret,
                             publishable_key=creds.values["publishable_key"], success=False)
    status = gateway.fetch_payment(created.gateway_ref, creds)
    assert status.status == FAILED
    assert status.failure_message == "The provided PaymentMethod has failed authentication."


def test_browser_return_names_the_payment_and_credits_nothing(creds):
    ok = gateway.parse_return({"payment_intent": "pi_123abc", "payment_intent_client_secret": "pi_123abc_secret_x",
                               "redirect_status": "succeeded"}, creds)
    assert (ok.gateway_ref, ok.looks_successful) == ("pi_123abc", True)
    failed = gateway.parse_return({"payment_intent": "pi_123abc", "redirect_status": "failed"}, creds)
    assert (failed.gateway_ref, failed.looks_successful) == ("pi_123abc", False)
    for junk in ({}, {"payment_intent": "../v1/charges", "redirect_status": "succeeded"}, {"payment_intent": ""}):
        assert gateway.parse_return(junk, creds) == stripe_gateway.ReturnResult(None, False)


# -- webhooks -------------------------------------------------------------------------------------------------


@pytest.fixture
def genuine(localstripe, webhooks, creds):
    created = gateway.create_payment(request_for(1050, "USD"), creds)
    pay(localstripe, creds, created)
    delivery, _ = webhooks.wait_for(created.gateway_ref, "payment_intent.succeeded", creds)
    return delivery


def test_forged_webhooks_are_refused(genuine, creds, localstripe):
    signature = genuine.headers["Stripe-Signature"]
    # The genuine one passes, whatever the header's case.
    assert gateway.verify_webhook({"stripe-signature": signature}, genuine.body, {}, creds).kind == \
        "payment_intent.succeeded"

    altered = genuine.body.replace(b'"amount": 1050', b'"amount": 999999', 1)
    assert altered != genuine.body
    forged_bodies = [altered, genuine.body + b" ", b"\xff\xfe not utf-8"]
    for body in forged_bodies:
        with pytest.raises(SignatureError):
            gateway.verify_webhook({"Stripe-Signature": signature}, body, {}, creds)

    other_secret = tenant(localstripe.url, webhook_secret="whsec_someone_else")
    with pytest.raises(SignatureError):
        gateway.verify_webhook(genuine.headers, genuine.body, {}, other_secret)
    for headers in ({}, {"Stripe-Signature": ""}, {"Stripe-Signature": "v1=abc"}, {"Stripe-Signature": "t=1,v0=a"}):
        with pytest.raises(SignatureError):
            gateway.verify_webhook(headers, genuine.body, {}, creds)

    # Signed with the right secret but too old (Stripe's five-minute tolerance): a replay.
    assert gateway.verify_webhook({"Stripe-Signature": stripe_signature(genuine.body)}, genuine.body, {}, creds)
    stale = stripe_signature(genuine.body, timestamp=int(time.time()) - 3600)
    with pytest.raises(SignatureError):
        gateway.verify_webhook({"Stripe-Signature": stale}, genuine.body, {}, creds)


def test_signed_events_name_the_payment_only_when_they_are_about_one(creds):
    def signed(event):
        payload = json.dumps(event).encode()
        return {"Stripe-Signature": stripe_signature(payload)}, payload

    refunded = {"id": "evt_1", "object": "event", "type": "charge.refunded",
                "data": {"object": {"id": "ch_1", "object": "charge", "payment_intent": "pi_9"}}}
    assert gateway.verify_webhook(*signed(refunded), {}, creds) == \
        stripe_gateway.WebhookEvent("evt_1", "pi_9", "charge.refunded")
    customer = {"id": "evt_2", "object": "event", "type": "customer.created",
                "data": {"object": {"id": "cus_1", "object": "customer"}}}
    assert gateway.verify_webhook(*signed(customer), {}, creds) == \
        stripe_gateway.WebhookEvent("evt_2", None, "customer.created")
    with pytest.raises(SignatureError):
        gateway.verify_webhook(*signed({"object": "event", "type": "charge.refunded"}), {}, creds)  # no id


def test_invalid_signature_answer_makes_stripe_retry():
    assert gateway.webhook_response("invalid_signature") == ({"received": "invalid_signature"}, 400)
    assert gateway.webhook_response("credited") == ({"received": "credited"}, 200)
    assert gateway.webhook_response("unknown") == ({"received": "unknown"}, 200)


# -- refunds --------------------------------------------------------------------------------------------------


def test_partial_refunds_add_up(localstripe, creds, proxy):
    created = gateway.create_payment(request_for(1050, "USD"), creds)
    pay(localstripe, creds, created)
    via_proxy = tenant(proxy.url)

    first = gateway.refund(created.gateway_ref, 300, "ks1-donati-x-r1", via_proxy)
    assert first.refund_ref.startswith("re_")
    assert (first.amount, first.status) == (300, SUCCEEDED)
    assert proxy.calls[-1] == Call("POST", "/v1/refunds", "sk_test_tenanta", "ks1-donati-x-r1")
    status = gateway.fetch_payment(created.gateway_ref, creds)
    assert (status.status, status.amount, status.refunded) == (SUCCEEDED, 1050, 300)

    gateway.refund(created.gateway_ref, 200, "ks1-donati-x-r2", creds)
    assert gateway.fetch_payment(created.gateway_ref, creds).refunded == 500


def test_a_failed_payment_cannot_be_refunded(localstripe, creds):
    created = gateway.create_payment(request_for(1050, "USD"), creds)
    pay(localstripe, creds, created, card=DECLINED)
    with pytest.raises(GatewayError, match="Cannot refund a failed payment"):
        gateway.refund(created.gateway_ref, 100, "ks1-donati-y-r1", creds)


# -- credentials ----------------------------------------------------------------------------------------------


def test_each_call_carries_its_own_tenants_key(localstripe, proxy):
    a, b = tenant(proxy.url, "a"), tenant(proxy.url, "b")
    request_a, request_b = request_for(1050, "USD"), request_for(50000, "VND")
    created_a = gateway.create_payment(request_a, a)
    created_b = gateway.create_payment(request_b, b)
    gateway.fetch_payment(created_a.gateway_ref, a)
    gateway.fetch_payment(created_b.gateway_ref, b)
    gateway.fetch_payment(created_a.gateway_ref, a)

    assert [(call.method, call.path, call.key, call.idempotency_key) for call in proxy.calls] == [
        ("POST", "/v1/payment_intents", "sk_test_tenanta", request_a.reference),
        ("POST", "/v1/payment_intents", "sk_test_tenantb", request_b.reference),
        ("GET", f"/v1/payment_intents/{created_a.gateway_ref}", "sk_test_tenanta", None),
        ("GET", f"/v1/payment_intents/{created_b.gateway_ref}", "sk_test_tenantb", None),
        ("GET", f"/v1/payment_intents/{created_a.gateway_ref}", "sk_test_tenanta", None),
    ]
    assert stripe.api_key is None  # the global key is never set


def test_another_accounts_key_cannot_read_a_payment(proxy):
    # localstripe keeps one store for every key, so Stripe's answer to another account's key (404,
    # resource_missing) is scripted on the proxy: B's read goes out with B's key and fails, never succeeds.
    a, b = tenant(proxy.url, "a"), tenant(proxy.url, "b")
    created = gateway.create_payment(request_for(1050, "USD"), a)
    proxy.script = [(404, {"error": {"code": "resource_missing", "type": "invalid_request_error",
                                     "message": f"No such payment_intent: '{created.gateway_ref}'"}})]
    with pytest.raises(GatewayError, match="No such payment_intent"):
        gateway.fetch_payment(created.gateway_ref, b)
    assert proxy.calls[-1].key == "sk_test_tenantb" and proxy.calls[-1].method == "GET"


def test_settings_schema():
    schema = StripeParams()
    good = {"publishable_key": "pk_live_abc", "secret_key": "sk_live_def", "webhook_secret": "whsec_ghi"}
    assert schema.load(good) == {**good, "api_base": None}
    assert schema.validate({**good, "secret_key": "pk_live_def"}).keys() == {"secret_key"}
    assert schema.validate({**good, "publishable_key": "pk_test_abc"}).keys() == {"secret_key"}  # modes differ
    assert schema.validate({**good, "api_base": "http://127.0.0.1:8420"}).keys() == {"api_base"}  # live keys
    test_keys = {"publishable_key": "pk_test_abc", "secret_key": "rk_test_def", "webhook_secret": "whsec_ghi"}
    assert schema.load({**test_keys, "api_base": "http://localstripe:8420"})["api_base"] == "http://localstripe:8420"
    assert schema.validate({}).keys() == {"publishable_key", "secret_key", "webhook_secret"}
    assert set(gateway.secret_fields) == {"secret_key", "webhook_secret"}


def test_another_api_address_is_refused_with_live_keys(proxy):
    live = Credentials({"publishable_key": "pk_live_x", "secret_key": "sk_live_x", "webhook_secret": "whsec_x",
                        "api_base": proxy.url})
    with pytest.raises(GatewayError, match="test-mode keys"):
        gateway.fetch_payment("pi_123", live)
    assert proxy.calls == []


# -- failures ----------------------------------------------------------------------------------------------------


def test_unreachable_stripe_is_unavailable():
    closed = tenant(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_payment("pi_123", closed)


def test_server_errors_are_retried_twice_then_unavailable(localstripe, proxy, creds):
    created = gateway.create_payment(request_for(1050, "USD"), creds)
    via_proxy = tenant(proxy.url)
    outage = (503, {"error": {"type": "api_error", "message": "Service unavailable"}})

    proxy.script = [outage, outage]
    assert gateway.fetch_payment(created.gateway_ref, via_proxy).status == PENDING
    assert len(proxy.calls) == 3

    proxy.calls.clear()
    proxy.script = [outage] * 3
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_payment(created.gateway_ref, via_proxy)
    assert len(proxy.calls) == 3


@pytest.mark.parametrize(("status_code", "error", "message"), [
    (402, {"type": "card_error", "code": "card_declined", "message": "Your card has insufficient funds."},
     "^Your card has insufficient funds.$"),
    (401, {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****nta"},
     "refused the secret key"),
    (404, {"type": "invalid_request_error", "message": "No such payment_intent: 'pi_nope'"},
     "No such payment_intent"),
    (400, {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same "
                                                   "parameters they were first used with."}, "idempotent"),
])
def test_refusals_are_gateway_errors_with_a_message(proxy, status_code, error, message):
    proxy.script = [(status_code, {"error": error})]
    with pytest.raises(GatewayError, match=message) as raised:
        gateway.refund("pi_123", 100, "ks1-donati-z-r1", tenant(proxy.url))
    assert not isinstance(raised.value, GatewayUnavailable)
    assert len(proxy.calls) == 1


def test_registered_as_a_plugin():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="kindstride.plugins") if e.name == "stripe"]
    assert entry.value == "rules_plugins.gateways.stripe_gateway"
    (registered,) = entry.load().register_payment_gateways()
    assert (registered.name, registered.label) == ("stripe", "Card (Stripe)")
    assert {"USD", "VND", "EUR", "SGD"} <= set(registered.currencies)
