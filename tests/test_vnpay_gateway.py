"""The VNPay gateway plugin against a fake VNPay speaking real HTTP (tests/support/fake_vnpay.py).

Gateway level only: no kindstride app. A tiny merchant IPN endpoint in this file stands in for the platform's
webhook view so that `send_ipn` makes the same GET VNPay makes.
"""

import threading
import uuid
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from flask import Flask, request
from marshmallow import ValidationError
from werkzeug.serving import make_server

from kindstride.payments.contract import (
    CANCELED,
    FAILED,
    PENDING,
    SUCCEEDED,
    Credentials,
    GatewayError,
    GatewayUnavailable,
    PaymentRequest,
    SignatureError,
)
from kindstride.plugins import PluginHost
from rules_plugins.gateways import vnpay
from rules_plugins.gateways.vnpay import GMT7, VNPayGateway
from tests.support.fake_vnpay import start_fake_vnpay

RETURN_URL = "https://acme.kindstride.test/payments/vnpay/return"


@pytest.fixture(scope="module")
def fake():
    server = start_fake_vnpay()
    yield server
    server.stop()


@pytest.fixture
def credentials(fake):
    return Credentials(dict(fake.credentials))


@pytest.fixture
def gateway():
    return VNPayGateway()


def _request(amount=50_000, currency="VND", **values):
    reference = values.pop("reference", f"ks1-donati-{uuid.uuid4().hex[:16]}")
    return PaymentRequest(reference=reference, amount=amount, currency=currency,
                          description=values.pop("description", "Ủng hộ Quỹ Trẻ em Đà Nẵng"),
                          return_url=RETURN_URL, notify_url="https://acme.kindstride.test/payments/vnpay/webhook",
                          payer_ip="203.0.113.7", locale=values.pop("locale", "vi"), **values)


def _pay(fake, gateway, credentials, outcome="success", amount=50_000):
    """Create a payment, let the payer go through the fake's page; return (created, return args)."""
    created = gateway.create_payment(_request(amount=amount), credentials)
    fake.next_outcome = outcome
    response = requests.get(created.redirect_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    return created, dict(parse_qsl(location.query, keep_blank_values=True))


def _query(url):
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


# -- signatures ------------------------------------------------------------------------------------------------


def test_signature_matches_an_independent_implementation():
    # VNPay's documentation shows a signed URL but not the secret behind it, so this vector comes from the test
    # suite of the `vnpay` npm library (lehuygiang28/vnpay, test/verify-return-url.test.ts), written apart from
    # this code: the same sorted, quote_plus-encoded query and HMAC-SHA512 must give the same hash.
    params = {"vnp_Amount": "1000000", "vnp_BankCode": "NCB", "vnp_BankTranNo": "VNP14422574", "vnp_CardType": "ATM",
              "vnp_OrderInfo": "Thanh toan don hang 2024-05-21T02:17:31.249Z", "vnp_PayDate": "20240521091806",
              "vnp_ResponseCode": "00", "vnp_TmnCode": "TEST_TMN_CODE", "vnp_TransactionNo": "14422574",
              "vnp_TransactionStatus": "00", "vnp_TxnRef": "1716257871703"}
    assert vnpay.sign_query(params, "test_secret") == (
        "649982421beb422556a1374713c74e58e716ecbd05007c0c0e1f7effdfaf361d"
        "bf146889ca446139afe11b9954c4d5c486e99e3b86fcfab6957f29eb0be72895")
    # the hash fields and our own (unsigned) parameters on the return URL do not take part
    assert vnpay.sign_query({**params, "vnp_SecureHash": "x", "vnp_SecureHashType": "HmacSHA512", "lang": "vi"},
                            "test_secret") == vnpay.sign_query(params, "test_secret")


# computed once with this code (and checked with the fake's separate signing code), then pinned
PINNED_PAYMENT_HASH = ("8a49c2300608c78876c15e19f828fb50300e0e388afd24fa94a1e5174b598787"
                       "4e1d023bd27fc9d3d3a875950cda64a5dec772e5c0ff9416243ce367c956012e")


def test_payment_url_is_pinned_for_a_fixed_clock():
    """A vector computed once with this code and pinned: any change to encoding, order or fields shows."""
    gateway = VNPayGateway(now=lambda: datetime(2025, 3, 1, 9, 30, 0, tzinfo=GMT7))
    created = gateway.create_payment(
        PaymentRequest(reference="ks12-donati-0123456789abcdef", amount=50_000, currency="VND",
                       description="Ủng hộ Quỹ Trẻ em Đà Nẵng: 5 km/ngày!", return_url="https://a.example/r?x=1",
                       notify_url="https://a.example/n", payer_ip="203.0.113.7", locale="vi"),
        Credentials({"tmn_code": "DEMOV210", "hash_secret": "SECRETSECRETSECRETSECRETSECRET12"}))
    assert created.gateway_ref == "ks12-donati-0123456789abcdef-20250301093000"
    assert created.redirect_url == (
        "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html?vnp_Amount=5000000&vnp_Command=pay"
        "&vnp_CreateDate=20250301093000&vnp_CurrCode=VND&vnp_ExpireDate=20250301094500&vnp_IpAddr=203.0.113.7"
        "&vnp_Locale=vn&vnp_OrderInfo=Ung+ho+Quy+Tre+em+Da+Nang%3A+5+km+ngay&vnp_OrderType=other"
        "&vnp_ReturnUrl=https%3A%2F%2Fa.example%2Fr%3Fx%3D1&vnp_TmnCode=DEMOV210"
        "&vnp_TxnRef=ks12-donati-0123456789abcdef-20250301093000&vnp_Version=2.1.0"
        "&vnp_SecureHash=" + PINNED_PAYMENT_HASH)


def test_api_checksums_are_pipe_joined_in_the_documented_order():
    values = {"vnp_RequestId": "r1", "vnp_Version": "2.1.0", "vnp_Command": "querydr", "vnp_TmnCode": "DEMOV210",
              "vnp_TxnRef": "t1", "vnp_TransactionDate": "20250301093000", "vnp_CreateDate": "20250301100000",
              "vnp_IpAddr": "127.0.0.1", "vnp_OrderInfo": "Truy van t1", "vnp_Extra": "ignored"}
    assert vnpay.pipe_signing_data(values, vnpay.QUERYDR_REQUEST_FIELDS) == (
        "r1|2.1.0|querydr|DEMOV210|t1|20250301093000|20250301100000|127.0.0.1|Truy van t1")
    # absent fields are empty, not "None"
    assert vnpay.pipe_signing_data({"vnp_ResponseId": "a"}, vnpay.QUERYDR_RESPONSE_FIELDS) == "a" + "|" * 14


# -- creating a payment ------------------------------------------------------------------------------------------


def test_create_payment_sends_the_documented_parameters(fake, gateway, credentials):
    before = datetime.now(GMT7).replace(microsecond=0)
    created = gateway.create_payment(_request(amount=50_000), credentials)
    params = _query(created.redirect_url)
    assert created.status == PENDING and created.client_secret is None
    assert params["vnp_Amount"] == "5000000"  # 50,000 VND x 100
    assert (params["vnp_Version"], params["vnp_Command"], params["vnp_CurrCode"]) == ("2.1.0", "pay", "VND")
    assert params["vnp_TmnCode"] == fake.tmn_code and params["vnp_TxnRef"] == created.gateway_ref
    assert params["vnp_OrderInfo"] == "Ung ho Quy Tre em Da Nang"
    assert (params["vnp_Locale"], params["vnp_OrderType"], params["vnp_IpAddr"]) == ("vn", "other", "203.0.113.7")
    assert params["vnp_ReturnUrl"] == RETURN_URL
    created_at = datetime.strptime(params["vnp_CreateDate"], "%Y%m%d%H%M%S").replace(tzinfo=GMT7)
    expires_at = datetime.strptime(params["vnp_ExpireDate"], "%Y%m%d%H%M%S").replace(tzinfo=GMT7)
    assert before <= created_at <= datetime.now(GMT7) and expires_at - created_at == timedelta(minutes=15)
    assert "vnp_SecureHashType" not in params
    assert created.redirect_url.rsplit("&", 1)[1].startswith("vnp_SecureHash=")  # the hash comes last
    assert gateway.create_payment(_request(locale="en"), credentials).redirect_url.count("vnp_Locale=en") == 1


def test_other_currencies_and_bad_requests_are_refused(gateway, credentials):
    with pytest.raises(GatewayError, match="USD"):
        gateway.create_payment(_request(amount=1050, currency="USD"), credentials)
    for amount in (0, -5, 10**10, True):
        with pytest.raises(GatewayError):
            gateway.create_payment(_request(amount=amount), credentials)
    for reference in ("", "ks 1", "ks/1", "x" * 86, "đơn-1"):
        with pytest.raises(GatewayError, match="reference"):
            gateway.create_payment(_request(reference=reference), credentials)
    assert gateway.create_payment(_request(reference="x" * 85), credentials).gateway_ref.startswith("x" * 85 + "-")
    with pytest.raises(GatewayError, match="hash_secret"):
        gateway.create_payment(_request(), Credentials({"tmn_code": "KSTEST01"}))


def test_the_fake_refuses_what_vnpay_refuses(fake, gateway, credentials):
    created = gateway.create_payment(_request(), credentials)
    tampered = created.redirect_url.replace("vnp_Amount=5000000", "vnp_Amount=500000")
    assert requests.get(tampered, allow_redirects=False, timeout=10).status_code == 400
    assert fake.errors[-1] == "invalid signature (97)"
    other_secret = Credentials({**fake.credentials, "hash_secret": "not-the-secret"})
    assert requests.get(gateway.create_payment(_request(), other_secret).redirect_url, timeout=10).status_code == 400
    assert requests.get(created.redirect_url, allow_redirects=False, timeout=10).status_code == 302
    again = requests.get(created.redirect_url, allow_redirects=False, timeout=10)
    assert again.status_code == 400 and fake.errors[-1] == "transaction already exists (01)"


# -- the payer's return ------------------------------------------------------------------------------------------


def test_successful_payment_round_trip(fake, gateway, credentials):
    created, args = _pay(fake, gateway, credentials)
    assert fake.payment_requests[-1]["vnp_Amount"] == "5000000"
    assert args["vnp_Amount"] == "5000000" and args["vnp_ResponseCode"] == "00"
    result = gateway.parse_return(args, credentials)
    assert result.gateway_ref == created.gateway_ref and result.looks_successful
    status = gateway.fetch_payment(created.gateway_ref, credentials)
    assert (status.status, status.amount, status.currency, status.refunded) == (SUCCEEDED, 50_000, "VND", 0)
    assert status.gateway_ref == created.gateway_ref and status.failure_message is None
    querydr = fake.api_requests[-1]
    assert querydr["vnp_Command"] == "querydr" and querydr["vnp_TransactionDate"] == args["vnp_TxnRef"][-14:]


def test_tampered_or_unsigned_returns_are_refused(fake, gateway, credentials):
    _created, args = _pay(fake, gateway, credentials)
    with pytest.raises(SignatureError):
        gateway.parse_return({**args, "vnp_Amount": "500000000"}, credentials)
    with pytest.raises(SignatureError):
        gateway.parse_return({**args, "vnp_ResponseCode": "00", "vnp_TransactionStatus": "01"}, credentials)
    with pytest.raises(SignatureError):
        gateway.parse_return({k: v for k, v in args.items() if k != "vnp_SecureHash"}, credentials)
    with pytest.raises(SignatureError):
        gateway.parse_return(args, Credentials({**fake.credentials, "hash_secret": "another"}))
    # our own parameters on the return URL are not signed and change nothing; upper-case hex is accepted
    result = gateway.parse_return({**args, "lang": "vi", "vnp_SecureHash": args["vnp_SecureHash"].upper()},
                                  credentials)
    assert result.looks_successful


@pytest.mark.parametrize("outcome", ["declined", "canceled"])
def test_declined_and_canceled_payments_fail(fake, gateway, credentials, outcome):
    created, args = _pay(fake, gateway, credentials, outcome=outcome)
    assert not gateway.parse_return(args, credentials).looks_successful
    status = gateway.fetch_payment(created.gateway_ref, credentials)
    assert (status.status, status.amount) == (FAILED, 50_000)
    assert "status 02" in status.failure_message


def test_an_abandoned_payment_is_pending_and_one_vnpay_never_saw_expires(fake, gateway, credentials):
    created = gateway.create_payment(_request(), credentials)
    fake.next_outcome = "abandon"
    assert requests.get(created.redirect_url, allow_redirects=False, timeout=10).status_code == 200
    assert gateway.fetch_payment(created.gateway_ref, credentials).status == PENDING

    never = gateway.create_payment(_request(), credentials)
    with pytest.raises(GatewayUnavailable, match="no record"):
        gateway.fetch_payment(never.gateway_ref, credentials)
    later = VNPayGateway(now=lambda: datetime.now(GMT7) + timedelta(hours=2))
    status = later.fetch_payment(never.gateway_ref, credentials)
    assert (status.status, status.amount) == (CANCELED, 0)


# -- IPN ---------------------------------------------------------------------------------------------------------


def test_ipn_is_verified_and_named(fake, gateway, credentials):
    created, _args = _pay(fake, gateway, credentials)
    params = fake.ipn_params(created.gateway_ref)
    event = gateway.verify_webhook({}, b"", params, credentials)
    number = fake.transaction(created.gateway_ref).transaction_no
    assert event.event_id == f"{created.gateway_ref}:{number}:00"
    assert (event.gateway_ref, event.kind) == (created.gateway_ref, "ipn")
    with pytest.raises(SignatureError):
        gateway.verify_webhook({}, b"", fake.ipn_params(created.gateway_ref, tamper=True), credentials)
    with pytest.raises(SignatureError):
        gateway.verify_webhook({}, b"", {}, credentials)


def test_webhook_answers_are_vnpays_codes(gateway):
    assert gateway.webhook_response("credited") == ({"RspCode": "00", "Message": "Confirm Success"}, 200)
    assert gateway.webhook_response("failed") == ({"RspCode": "00", "Message": "Confirm Success"}, 200)
    assert gateway.webhook_response("duplicate") == ({"RspCode": "02", "Message": "Order already confirmed"}, 200)
    assert gateway.webhook_response("unknown") == ({"RspCode": "01", "Message": "Order not found"}, 200)
    assert gateway.webhook_response("amount_mismatch") == ({"RspCode": "04", "Message": "Invalid amount"}, 200)
    assert gateway.webhook_response("invalid_signature") == ({"RspCode": "97", "Message": "Invalid signature"}, 200)
    assert gateway.webhook_response("pending") == ({"RspCode": "99", "Message": "Unknown error"}, 200)
    body, status = gateway.webhook_response("unavailable")
    assert status == 503 and body["RspCode"] == "99"


class _Merchant:
    """The platform's webhook handling in miniature: verify, dedupe by event id, re-read, answer."""

    def __init__(self, gateway, credentials):
        self.gateway, self.credentials = gateway, credentials
        self.expected = {}  # gateway_ref -> amount we asked for
        self.seen = set()
        self.down = False
        app = Flask("merchant")
        app.add_url_rule("/ipn", "ipn", self._ipn)
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/ipn"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _ipn(self):
        if self.down:
            return self.gateway.webhook_response("unavailable")
        try:
            event = self.gateway.verify_webhook(dict(request.headers), request.get_data(), request.args,
                                                self.credentials)
        except SignatureError:
            return self.gateway.webhook_response("invalid_signature")
        if event.event_id in self.seen:
            return self.gateway.webhook_response("duplicate")
        if event.gateway_ref not in self.expected:
            return self.gateway.webhook_response("unknown")
        status = self.gateway.fetch_payment(event.gateway_ref, self.credentials)
        if status.amount != self.expected[event.gateway_ref]:
            outcome = "amount_mismatch"
        else:
            outcome = "credited" if status.status == SUCCEEDED else "failed"
        self.seen.add(event.event_id)
        return self.gateway.webhook_response(outcome)

    def stop(self):
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


def test_ipn_round_trip_over_http(fake, gateway, credentials):
    merchant = _Merchant(gateway, credentials)
    try:
        created, _args = _pay(fake, gateway, credentials)
        merchant.expected[created.gateway_ref] = 50_000
        merchant.down = True
        down = fake.send_ipn(created.gateway_ref, merchant.url)
        assert down.status_code == 503  # VNPay retries
        merchant.down = False
        assert fake.send_ipn(created.gateway_ref, merchant.url, tamper=True).json()["RspCode"] == "97"
        first = fake.send_ipn(created.gateway_ref, merchant.url)
        assert (first.status_code, first.json()) == (200, {"RspCode": "00", "Message": "Confirm Success"})
        assert fake.send_ipn(created.gateway_ref, merchant.url).json()["RspCode"] == "02"

        stranger, _args = _pay(fake, gateway, credentials)
        assert fake.send_ipn(stranger.gateway_ref, merchant.url).json()["RspCode"] == "01"
        merchant.expected[stranger.gateway_ref] = 40_000  # we asked for another amount than VNPay charged
        assert fake.send_ipn(stranger.gateway_ref, merchant.url).json()["RspCode"] == "04"
        assert [status for _ref, status, _body in fake.ipn_log[-6:]] == [503, 200, 200, 200, 200, 200]
    finally:
        merchant.stop()


# -- querydr failures --------------------------------------------------------------------------------------------


def test_unreachable_or_failing_vnpay_is_unavailable(fake, gateway, credentials):
    created, _args = _pay(fake, gateway, credentials)
    fake.fail_next_api(503)
    with pytest.raises(GatewayUnavailable, match="HTTP 503"):
        gateway.fetch_payment(created.gateway_ref, credentials)
    closed = make_server("127.0.0.1", 0, Flask("closed"))
    port = closed.server_port
    closed.server_close()
    nowhere = Credentials({**fake.credentials, "api_url": f"http://127.0.0.1:{port}/merchant_webapi/api/transaction"})
    with pytest.raises(GatewayUnavailable, match="could not be reached"):
        gateway.fetch_payment(created.gateway_ref, nowhere)
    assert gateway.fetch_payment(created.gateway_ref, credentials).status == SUCCEEDED


def test_answers_that_are_not_signed_by_vnpay_are_refused(fake, gateway, credentials):
    created, _args = _pay(fake, gateway, credentials)
    fake.tamper_next_answer()
    with pytest.raises(SignatureError):
        gateway.fetch_payment(created.gateway_ref, credentials)
    with pytest.raises(GatewayError, match="hash_secret"):  # VNPay answers 97 to a checksum made with another key
        gateway.fetch_payment(created.gateway_ref, Credentials({**fake.credentials, "hash_secret": "wrong"}))
    with pytest.raises(GatewayError, match="not a VNPay payment reference"):
        gateway.fetch_payment("pi_123", credentials)


# -- refunds -----------------------------------------------------------------------------------------------------


def test_partial_refunds_then_the_rest(fake, gateway, credentials):
    created, _args = _pay(fake, gateway, credentials)
    first = gateway.refund(created.gateway_ref, 20_000, "ks1-donati-r1", credentials)
    assert (first.amount, first.status) == (20_000, SUCCEEDED)
    wire = fake.api_requests[-1]
    assert (wire["vnp_Command"], wire["vnp_TransactionType"], wire["vnp_Amount"]) == ("refund", "03", "2000000")
    assert wire["vnp_TransactionNo"] == fake.transaction(created.gateway_ref).transaction_no
    second = gateway.refund(created.gateway_ref, 30_000, "ks1-donati-r2", credentials)
    assert fake.api_requests[-1]["vnp_TransactionType"] == "03"  # a full refund is not allowed after a partial
    assert first.refund_ref != second.refund_ref
    assert first.refund_ref == fake.transaction(created.gateway_ref).refunds[0].response_id
    assert [(r.amount, r.transaction_type) for r in fake.transaction(created.gateway_ref).refunds] == [
        (20_000, "03"), (30_000, "03")]
    assert gateway.fetch_payment(created.gateway_ref, credentials).status == SUCCEEDED
    with pytest.raises(GatewayError, match="refund amount"):
        gateway.refund(created.gateway_ref, 1, "ks1-donati-r3", credentials)


def test_full_refund(fake, gateway, credentials):
    created, _args = _pay(fake, gateway, credentials, amount=75_000)
    result = gateway.refund(created.gateway_ref, 75_000, "ks1-donati-r1", credentials)
    assert result.amount == 75_000 and result.extra["vnp_TransactionType"] == "02"
    assert fake.api_requests[-1]["vnp_Amount"] == "7500000"
    status = gateway.fetch_payment(created.gateway_ref, credentials)
    assert (status.status, status.amount, status.refunded) == (SUCCEEDED, 75_000, 75_000)


def test_a_repeated_refund_request_cannot_refund_twice(fake, gateway, credentials):
    created, _args = _pay(fake, gateway, credentials)
    gateway.refund(created.gateway_ref, 10_000, "ks1-donati-r1", credentials)
    with pytest.raises(GatewayError, match="already has this request") as refused:
        gateway.refund(created.gateway_ref, 10_000, "ks1-donati-r1", credentials)
    assert not isinstance(refused.value, GatewayUnavailable)
    assert fake.transaction(created.gateway_ref).refunded == 10_000


def test_refunds_of_unpaid_payments_or_too_much_are_refused(fake, gateway, credentials):
    declined, _args = _pay(fake, gateway, credentials, outcome="declined")
    with pytest.raises(GatewayError, match="only a paid"):
        gateway.refund(declined.gateway_ref, 50_000, "r1", credentials)
    paid, _args = _pay(fake, gateway, credentials)
    with pytest.raises(GatewayError, match="cannot refund 50001"):
        gateway.refund(paid.gateway_ref, 50_001, "r1", credentials)
    for amount in (0, -1, 1.5):
        with pytest.raises(GatewayError):
            gateway.refund(paid.gateway_ref, amount, "r1", credentials)
    assert fake.transaction(paid.gateway_ref).refunds == []


# -- plugin registration -----------------------------------------------------------------------------------------


def test_registered_as_a_plugin_with_its_settings():
    (entry_point,) = [ep for ep in entry_points(group="kindstride.plugins") if ep.name == "vnpay"]
    assert entry_point.value == "rules_plugins.gateways.vnpay"
    host = PluginHost(["vnpay"])
    gateways = host.strategies("register_payment_gateways", SimpleNamespace(enabled_plugins=["vnpay"]))
    gateway = gateways["vnpay"]
    assert isinstance(gateway, VNPayGateway)
    assert (gateway.label, gateway.currencies, gateway.secret_fields) == ("VNPay", ("VND",), ("hash_secret",))
    loaded = gateway.params_schema().load({"tmn_code": "DEMOV210", "hash_secret": "s"})
    assert loaded["payment_url"] == "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
    assert loaded["api_url"] == "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction"
    with pytest.raises(ValidationError) as error:
        gateway.params_schema().load({"tmn_code": "DEMO"})
    assert set(error.value.messages) == {"tmn_code", "hash_secret"}
