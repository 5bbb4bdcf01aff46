"""Card payments through Stripe, with each tenant's own Stripe account (`rules_plugins.gateways.stripe_gateway`).

The flow, with Stripe's PaymentIntents API:

1. `create_payment` creates a PaymentIntent (cards only) and returns its id and client secret. The payment
   page confirms it in the browser with Stripe.js and the tenant's publishable key; the card number never
   reaches kindstride. Stripe.js's `return_url` (where a 3-D Secure challenge comes back to) is given in the
   browser, so `PaymentRequest.return_url` is not sent from here; nor is `payer_email` (as receipt_email,
   Stripe would email its own receipt in live mode).
2. The browser may come back with `?payment_intent=pi_...&redirect_status=...`: `parse_return` names the
   payment for the page to show; nothing is credited from it.
3. Stripe sends webhooks to the endpoint the tenant adds in its Stripe dashboard (that endpoint's URL is
   `PaymentRequest.notify_url`; Stripe has no per-payment notification address) and signs them with that
   endpoint's signing secret: `verify_webhook` checks the signature with `stripe.Webhook`'s own code.
4. `fetch_payment` re-reads the PaymentIntent with the tenant's secret key: the only source of truth.

Credentials: each call builds its own `stripe.StripeClient` (stripe-python >= 12.5, for `client.v1`) from the
tenant's keys, with timeouts and two network retries (POSTs carry our reference as idempotency key). The
module-level `stripe.api_key` is never read or set, so two tenants' calls cannot mix even on the same thread.
`api_base` points the client at another Stripe-compatible server (tests use localstripe); because such a
server's answers are believed like Stripe's, it is refused unless the keys are test-mode keys.

Amounts: kindstride's amounts are in the ISO 4217 minor unit; Stripe's API takes "the smallest currency
unit", except for currencies it treats differently from ISO (ISK, HUF, TWD, UGX and MGA: see
https://docs.stripe.com/currencies). Those, and the three-decimal currencies, are left out of `CURRENCIES`,
so for every currency offered here the two units are the same number: zero-decimal currencies go as they
are (VND 50000 is amount=50000 on the wire) and two-decimal ones in cents (USD 1050 is amount=1050, $10.50).
Because of that, a refund (which the contract gives without a currency) is sent as it is.
"""

import re
from contextlib import contextmanager

import stripe
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from kindstride.hookspecs import hookimpl
from kindstride.payments.contract import (
    CANCELED,
    FAILED,
    PENDING,
    REQUIRES_ACTION,
    SUCCEEDED,
    CreatedPayment,
    GatewayError,
    GatewayUnavailable,
    PaymentGateway,
    PaymentStatus,
    RefundResult,
    ReturnResult,
    SignatureError,
    WebhookEvent,
)

# ISO 4217 zero-decimal currencies Stripe also charges without a minor unit.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "PYG", "RWF", "VND", "VUV", "XAF", "XOF",
                          "XPF"})
# ISO 4217 two-decimal currencies Stripe charges in hundredths, with no special rule.
TWO_DECIMAL = frozenset({"AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "IDR", "INR",
                         "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "SEK", "SGD", "THB", "USD", "ZAR"})
CURRENCIES = tuple(sorted(ZERO_DECIMAL | TWO_DECIMAL))

CONNECT_TIMEOUT, READ_TIMEOUT = 5, 30  # seconds, per attempt
MAX_NETWORK_RETRIES = 2  # Stripe's client retries connection errors, 409s and 5xx; POSTs carry idempotency keys

_PAYMENT_INTENT_ID = re.compile(r"pi_[A-Za-z0-9]{1,250}")


def stripe_amount(amount: int, currency: str) -> int:
    """Our amount (ISO 4217 minor units) as Stripe's `amount` for `currency`; GatewayError if not offered."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return amount  # no minor unit in ISO 4217 nor at Stripe: VND 50000 is 50,000 VND for both
    if code in TWO_DECIMAL:
        return amount  # cents for both: USD 1050 is $10.50
    raise GatewayError(f"Stripe payments in {code} are not available")


def _is_test_key(key: str | None) -> bool:
    return bool(key) and key.split("_", 2)[1:2] == ["test"]


class StripeParams(Schema):
    publishable_key = fields.String(required=True, validate=validate.Regexp(
        r"^pk_(test|live)_\S+$", error="must be a publishable key (pk_test_... or pk_live_...)"))
    secret_key = fields.String(required=True, validate=validate.Regexp(
        r"^(sk|rk)_(test|live)_\S+$", error="must be a secret or restricted key (sk_... or rk_...)"))
    webhook_secret = fields.String(required=True, validate=validate.Regexp(
        r"^whsec_\S+$", error="must be the webhook endpoint's signing secret (whsec_...)"))
    api_base = fields.Url(load_default=None, allow_none=True, require_tld=False, schemes={"http", "https"})

    @validates_schema
    def _keys_agree(self, data, **kwargs):
        publishable, secret = data.get("publishable_key"), data.get("secret_key")
        if publishable and secret and _is_test_key(publishable) != _is_test_key(secret):
            raise ValidationError("the publishable and secret keys must both be test keys or both live keys",
                                  "secret_key")
        if data.get("api_base") and not (_is_test_key(publishable) and _is_test_key(secret)):
            raise ValidationError("another API address can only be used with test-mode keys", "api_base")


_STATUSES = {
    "succeeded": SUCCEEDED,
    "processing": PENDING,
    "requires_capture": PENDING,  # authorised, not captured: not money yet (this gateway captures automatically)
    "requires_action": REQUIRES_ACTION,
    "requires_confirmation": REQUIRES_ACTION,
    "canceled": CANCELED,
}
_REFUND_STATUSES = {"succeeded": SUCCEEDED, "pending": PENDING, "requires_action": PENDING, "failed": FAILED,
                    "canceled": CANCELED}


def _client(credentials) -> stripe.StripeClient:
    values = credentials.values
    secret_key = values.get("secret_key")
    if not secret_key:
        raise GatewayError("Stripe is not configured: the secret key is missing")
    base_addresses = None
    if values.get("api_base"):
        if not _is_test_key(secret_key):
            raise GatewayError("Stripe is misconfigured: another API address can only be used with test-mode keys")
        base_addresses = {"api": values["api_base"].rstrip("/")}
    return stripe.StripeClient(
        secret_key,
        base_addresses=base_addresses,
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)),
    )


@contextmanager
def _stripe_errors(action: str):
    """Stripe's exceptions as the contract's: refusals name what went wrong, outages say to try later."""
    try:
        yield
    except stripe.CardError as error:
        raise GatewayError(error.user_message or "The card was declined.") from None
    except (stripe.APIConnectionError, stripe.RateLimitError):
        raise GatewayUnavailable(f"Stripe could not be reached to {action}; try again later") from None
    except stripe.AuthenticationError:
        raise GatewayError(f"Stripe refused the secret key when asked to {action}: check the Stripe settings") \
            from None
    except stripe.PermissionError:
        raise GatewayError(f"the Stripe key is not allowed to {action}: check the key's permissions") from None
    except stripe.StripeError as error:
        if error.http_status is None or error.http_status >= 500 or error.http_status == 409:
            raise GatewayUnavailable(f"Stripe could not {action} just now; try again later") from None
        raise GatewayError(f"Stripe could not {action}: {error.user_message or 'request refused'}") from None


def _plain(obj) -> dict:
    """A Stripe object as data read with `.get`: up to stripe 14 a StripeObject is a dict (and `to_dict` is
    deprecated); from stripe 15 it is not, and `to_dict()` gives plain dicts all the way down."""
    return obj if isinstance(obj, dict) else obj.to_dict()


def _header(headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict: find the header whatever its case
        value = next((v for k, v in dict(headers).items() if k.lower() == name.lower()), None)
    return value


class StripeGateway(PaymentGateway):
    name = "stripe"
    label = "Card (Stripe)"
    currencies = CURRENCIES
    params_schema = StripeParams
    secret_fields = ("secret_key", "webhook_secret")
    platform_fields = ("api_base",)

    def webhook_response(self, outcome: str) -> tuple[dict, int]:
        # A refused signature answers 400 so that Stripe shows the failure in the tenant's dashboard and keeps
        # retrying (for up to three days) while the signing secret is fixed; everything else was received.
        return {"received": outcome}, 400 if outcome == "invalid_signature" else 200

    def create_payment(self, request, credentials) -> CreatedPayment:
        amount = stripe_amount(request.amount, request.currency)
        if amount <= 0:
            raise GatewayError("the amount must be positive")
        params = {
            "amount": amount,
            "currency": request.currency.lower(),
            "payment_method_types": ["card"],
            "metadata": {"reference": request.reference},
        }
        if request.description:
            params["description"] = request.description
        client = _client(credentials)
        with _stripe_errors("create the payment"):
            intent = client.v1.payment_intents.create(params=params, options={"idempotency_key": request.reference})
        return CreatedPayment(gateway_ref=intent.id, client_secret=intent.client_secret)

    def parse_return(self, args, credentials) -> ReturnResult:
        ref = args.get("payment_intent")
        if not (isinstance(ref, str) and _PAYMENT_INTENT_ID.fullmatch(ref)):
            ref = None
        return ReturnResult(gateway_ref=ref, looks_successful=ref is not None and
                            args.get("redirect_status") == "succeeded")

    def verify_webhook(self, headers, body, args, credentials) -> WebhookEvent:
        secret = credentials.values.get("webhook_secret")
        if not secret:
            raise SignatureError("no Stripe webhook signing secret is configured")
        signature = _header(headers, "Stripe-Signature")
        if not signature:
            raise SignatureError("the Stripe-Signature header is missing")
        try:
            event = _plain(_client(credentials).construct_event(body, signature, secret))
        except stripe.SignatureVerificationError as error:
            raise SignatureError(f"the Stripe signature does not match: {error.user_message or error}") from None
        except ValueError:  # not UTF-8, not JSON, or not a snapshot event: refused like a bad signature
            raise SignatureError("the body is not a Stripe event") from None
        event_id, kind = event.get("id"), event.get("type")
        if not (isinstance(event_id, str) and event_id and isinstance(kind, str)):
            raise SignatureError("the body is not a Stripe event")
        obj = (event.get("data") or {}).get("object") or {}
        gateway_ref = None
        if kind.startswith("payment_intent.") and obj.get("object") == "payment_intent":
            gateway_ref = obj.get("id")
        elif kind == "charge.refunded":
            gateway_ref = obj.get("payment_intent")
            if isinstance(gateway_ref, dict):  # expanded
                gateway_ref = gateway_ref.get("id")
        return WebhookEvent(event_id=event_id, gateway_ref=gateway_ref if isinstance(gateway_ref, str) else None,
                            kind=kind)

    def fetch_payment(self, gateway_ref, credentials) -> PaymentStatus:
        client = _client(credentials)
        with _stripe_errors("read the payment"):
            intent = _plain(client.v1.payment_intents.retrieve(
                gateway_ref, params={"expand": ["latest_charge.balance_transaction"]}))
            charge = intent.get("latest_charge")
            if isinstance(charge, str):  # not expanded: ask for it
                charge = _plain(client.v1.charges.retrieve(charge, params={"expand": ["balance_transaction"]}))
        currency = str(intent.get("currency", "")).upper()
        error = intent.get("last_payment_error") or None
        stripe_status = intent.get("status")
        if stripe_status == "requires_payment_method":
            # A new PaymentIntent waits for a card; one whose last attempt failed (declined, or 3-D Secure
            # failed) says why. The payer may still retry with another card: a later fetch then tells.
            status = FAILED if error else PENDING
        else:
            status = _STATUSES.get(stripe_status, PENDING)
        amount = intent.get("amount") or 0
        if status == SUCCEEDED:
            # What was taken. localstripe leaves out amount_received: the charge's amount then.
            received = intent.get("amount_received")
            if received is None and charge:
                received = charge.get("amount_captured", charge.get("amount"))
            amount = amount if received is None else received
        fee = refunded = 0
        if charge:
            # A PaymentIntent has at most one successful charge: its latest. Earlier, failed attempts hold no money.
            refunded = charge.get("amount_refunded") or 0
            balance = charge.get("balance_transaction")
            if isinstance(balance, dict) and str(balance.get("currency", "")).upper() == currency:
                # The fee is in the account's settlement currency; when that is not the payment's currency it
                # is not reported (converting it here would invent money).
                fee = balance.get("fee") or 0
        return PaymentStatus(
            gateway_ref=intent.get("id") or gateway_ref,
            status=status,
            amount=int(amount),
            currency=currency,
            fee=int(fee),
            refunded=int(refunded),
            failure_message=(error.get("message") or "The payment failed.") if status == FAILED else None,
        )

    def refund(self, gateway_ref, amount, reference, credentials) -> RefundResult:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise GatewayError("the refund amount must be a positive whole number")
        client = _client(credentials)
        with _stripe_errors("refund the payment"):
            refund = _plain(client.v1.refunds.create(
                params={"payment_intent": gateway_ref, "amount": amount, "metadata": {"reference": reference}},
                options={"idempotency_key": reference}))
        return RefundResult(refund_ref=refund["id"], amount=int(refund.get("amount") or amount),
                            status=_REFUND_STATUSES.get(refund.get("status"), PENDING),
                            extra={"charge": refund.get("charge")})


@hookimpl
def register_payment_gateways():
    return [StripeGateway()]
