"""The contract every payment gateway plugin keeps (registered with `register_payment_gateways`).

Amounts are integers in the currency's minor unit as ISO 4217 defines it (VND has none: 50000 means
50,000 VND; USD has cents: 1050 means $10.50). A gateway converts to its own convention at its edge
(Stripe: zero-decimal currencies are sent as-is; VNPay: vnp_Amount is the VND amount times 100).

What each step may and may not do:
- `create_payment` talks to the gateway and returns where the payer goes next. It never marks money
  as received: nothing is credited until the gateway confirms.
- `parse_return` reads the payer's browser coming back. The browser is not trusted: the result is only
  used to show a page ("processing", "failed"); money is credited from `fetch_payment` only.
- `verify_webhook` checks the signature of a notification and names the event and the object it is
  about. It never trusts amounts or states in the payload: the platform re-reads the object with
  `fetch_payment`, with the tenant's own credentials, before the ledger changes.
- `fetch_payment` asks the gateway for the truth about one payment.
- `refund` asks the gateway to refund part or all of a payment and returns the gateway's refund id.
A method that cannot reach the gateway raises GatewayUnavailable (the caller retries later); one that
is refused raises GatewayError with a message for a person.
"""

from dataclasses import dataclass, field

from marshmallow import Schema

SUCCEEDED, PENDING, FAILED, REQUIRES_ACTION, CANCELED = "succeeded", "pending", "failed", "requires_action", "canceled"


class GatewayError(Exception):
    """The gateway refused; the message can be shown to the person who asked."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or answered 5xx: try again later."""


class SignatureError(GatewayError):
    """A notification's signature is missing or wrong: it is refused and logged."""


@dataclass(frozen=True)
class Credentials:
    """A tenant's own gateway settings: public values and decrypted secrets, by name."""

    values: dict


@dataclass(frozen=True)
class PaymentRequest:
    reference: str  # our unique reference for this payment (e.g. "ks-12-donation-345"): idempotency key
    amount: int  # minor units
    currency: str  # ISO 4217
    description: str
    return_url: str  # where the payer's browser comes back to
    notify_url: str  # where the gateway sends webhooks / IPN for this tenant
    payer_email: str | None = None
    payer_ip: str = "127.0.0.1"
    locale: str = "en"


@dataclass(frozen=True)
class CreatedPayment:
    gateway_ref: str  # the gateway's id for the payment (Stripe PaymentIntent id, VNPay vnp_TxnRef)
    redirect_url: str | None = None  # send the payer here (VNPay)
    client_secret: str | None = None  # for a client-side element (Stripe Payment Element)
    status: str = PENDING


@dataclass(frozen=True)
class PaymentStatus:
    gateway_ref: str
    status: str  # SUCCEEDED, PENDING, FAILED, REQUIRES_ACTION, CANCELED
    amount: int  # minor units, as charged
    currency: str
    fee: int = 0  # the gateway's fee, minor units, when it reports one
    refunded: int = 0  # total refunded so far, minor units
    failure_message: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str  # unique per gateway: duplicates are ignored by it
    gateway_ref: str | None  # the payment it is about; None for events the platform ignores
    kind: str  # e.g. "payment_intent.succeeded", "ipn"


@dataclass(frozen=True)
class ReturnResult:
    gateway_ref: str | None
    looks_successful: bool  # only for what the page says; never for crediting


@dataclass(frozen=True)
class RefundResult:
    refund_ref: str
    amount: int
    status: str = SUCCEEDED
    extra: dict = field(default_factory=dict)


class PaymentGateway:
    name: str
    label: str
    currencies: tuple[str, ...]  # ISO codes it can charge in
    params_schema: type[Schema]  # the tenant's settings: which keys are secrets is in `secret_fields`
    secret_fields: tuple[str, ...] = ()
    # Settings only the platform operator sets (KINDSTRIDE_GATEWAY_ENDPOINTS), never a tenant: where the
    # gateway's API is. A tenant pointing them at its own server could have fake payments credited.
    platform_fields: tuple[str, ...] = ()

    # What a webhook answer must look like, when the gateway prescribes one (VNPay's IPN does).
    def webhook_response(self, outcome: str) -> tuple[dict, int]:
        return {"received": outcome}, 200

    def create_payment(self, request: PaymentRequest, credentials: Credentials) -> CreatedPayment:
        raise NotImplementedError

    def parse_return(self, args: dict, credentials: Credentials) -> ReturnResult:
        raise NotImplementedError

    def verify_webhook(self, headers: dict, body: bytes, args: dict, credentials: Credentials) -> WebhookEvent:
        raise NotImplementedError

    def fetch_payment(self, gateway_ref: str, credentials: Credentials) -> PaymentStatus:
        raise NotImplementedError

    def refund(self, gateway_ref: str, amount: int, reference: str, credentials: Credentials) -> RefundResult:
        raise NotImplementedError
