"""Taking payments through a tenant's gateways, and turning confirmed payments into ledger entries.

Money enters the ledger only from `fetch_payment` (the gateway's own answer, asked with the tenant's
credentials), never from a browser return or a webhook payload; every step is idempotent, so duplicate,
replayed and out-of-order notifications change nothing twice.
"""

import logging
import re
import uuid

import sqlalchemy as sa
from flask import current_app

from kindstride import audit
from kindstride.db import db
from kindstride.ledger.models import LedgerTransaction
from kindstride.ledger.services import Posting, record
from kindstride.payments.contract import (
    SUCCEEDED,
    Credentials,
    GatewayError,
    GatewayUnavailable,
    PaymentRequest,
    SignatureError,
    WebhookEvent,
)
from kindstride.payments.models import Payment, WebhookDelivery
from kindstride.plugins import plugin_host
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import require_tenant_id
from kindstride.tenancy.services import load_secret

log = logging.getLogger(__name__)
__all__ = ["GatewayError", "GatewayUnavailable", "PaymentError", "handle_webhook", "refund", "start_payment",
           "sync_payment"]
MAX_AMOUNT = 10**13  # minor units: far above any real donation, far below integer limits


class PaymentError(ValueError):
    def __init__(self, *errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def gateways_of(tenant) -> dict:
    """The gateways this tenant enabled (plugin) and configured (settings), by name."""
    available = plugin_host().strategies("register_payment_gateways", tenant)
    configured = (tenant.settings or {}).get("gateways") or {}
    return {name: gateway for name, gateway in available.items() if name in configured}


def gateway_and_credentials(tenant, name):
    gateway = gateways_of(tenant).get(name)
    if gateway is None:
        raise PaymentError(f"gateway: {name!r} is not available on this site")
    values = dict((tenant.settings.get("gateways") or {}).get(name) or {})
    for field in gateway.platform_fields:
        values.pop(field, None)
        configured = current_app.config["GATEWAY_ENDPOINTS"].get(f"{name}.{field}")
        if configured:
            values[field] = configured
    for field in gateway.secret_fields:
        values[field] = load_secret(f"gateway.{name}.{field}")
    missing = [field for field in gateway.secret_fields if not values.get(field)]
    if missing:
        raise PaymentError(f"gateway: {name} is not fully configured (missing {', '.join(missing)})")
    return gateway, Credentials(values)


def check_amount(amount, currency, gateway):
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise PaymentError("amount: must be a whole number in the currency's smallest unit")
    if amount <= 0 or amount > MAX_AMOUNT:
        raise PaymentError(f"amount: must be between 1 and {MAX_AMOUNT}")
    if currency not in gateway.currencies:
        raise PaymentError(f"currency: {gateway.label} cannot charge {currency}")


def start_payment(*, purpose, income_account, amount, currency, gateway_name, idempotency_key, description,
                  return_url, notify_url, payer_email=None, payer_ip="127.0.0.1", locale="en"):
    """Create (or, for the same idempotency key, find again) a payment and ask the gateway to start it."""
    tenant = db.session.get(Tenant, require_tenant_id())
    gateway, credentials = gateway_and_credentials(tenant, gateway_name)
    check_amount(amount, currency, gateway)
    existing = db.session.scalar(sa.select(Payment).where(Payment.idempotency_key == idempotency_key))
    if existing is not None:
        if ((existing.amount, existing.currency, existing.gateway, existing.purpose, existing.income_account)
                != (amount, currency, gateway_name, purpose, income_account)):
            raise PaymentError("idempotency_key: already used for a different payment")
        return existing, None
    payment = Payment(purpose=purpose, gateway=gateway_name, amount=amount, currency=currency,
                      idempotency_key=idempotency_key, income_account=income_account,
                      reference=f"ks{tenant.id}-{purpose[:6]}-{uuid.uuid4().hex[:16]}")
    db.session.add(payment)
    db.session.flush()
    created = gateway.create_payment(PaymentRequest(
        reference=payment.reference, amount=amount, currency=currency, description=description[:200],
        return_url=return_url, notify_url=notify_url, payer_email=payer_email, payer_ip=payer_ip, locale=locale,
    ), credentials)
    payment.gateway_ref = created.gateway_ref
    return payment, created


def sync_payment(payment) -> str:
    """Ask the gateway about a payment and credit the ledger once it succeeded. Returns the outcome:
    "credited", "already_credited", "pending", "failed" or "amount_mismatch"."""
    tenant = db.session.get(Tenant, payment.tenant_id)
    gateway, credentials = gateway_and_credentials(tenant, payment.gateway)
    status = gateway.fetch_payment(payment.gateway_ref, credentials)
    if status.status == SUCCEEDED and (status.amount, status.currency) != (payment.amount, payment.currency):
        log.warning("payment %s: gateway reports %s %s, expected %s %s", payment.reference, status.amount,
                    status.currency, payment.amount, payment.currency)
        payment.failure_message = "the gateway reports another amount or currency"
        return "amount_mismatch"
    payment.status = status.status
    payment.failure_message = status.failure_message
    if status.status != SUCCEEDED:
        return "pending" if status.status in ("pending", "requires_action") else "failed"
    captured = f"payment:{payment.reference}:captured"
    already = db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)
                                .where(LedgerTransaction.reference == captured))
    record("payment", captured, payment.currency,
           [Posting(f"gateway:{payment.gateway}", payment.amount), Posting(payment.income_account, -payment.amount)],
           memo=f"{payment.purpose} {payment.reference}")
    if status.fee:
        record("fee", f"payment:{payment.reference}:fee", payment.currency,
               [Posting(f"fees:{payment.gateway}", status.fee), Posting(f"gateway:{payment.gateway}", -status.fee)])
    if already:
        return "already_credited"
    _on_success(payment)
    return "credited"


def _on_success(payment):
    from kindstride.fundraising.services import payment_succeeded

    audit.record("payment.succeeded", "payment", payment.id, amount=payment.amount, currency=payment.currency)
    payment_succeeded(payment)


def handle_webhook(gateway_name, headers, body, args) -> str:
    """A gateway notification for the current tenant: verified, deduplicated by event id, then the payment
    is re-read from the gateway. Returns the outcome for the gateway's answer."""
    tenant = db.session.get(Tenant, require_tenant_id())
    try:
        gateway, credentials = gateway_and_credentials(tenant, gateway_name)
    except PaymentError:
        return "unknown"
    try:
        event: WebhookEvent = gateway.verify_webhook(headers, body, args, credentials)
    except SignatureError as error:
        log.warning("tenant %s: %s webhook refused: %s", tenant.slug, gateway_name, error)
        return "invalid_signature"
    delivered = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.gateway == gateway_name,
                                                                   WebhookDelivery.event_id == event.event_id))
    if delivered is not None:
        return "duplicate"
    payment = None
    if event.gateway_ref:
        payment = db.session.scalar(sa.select(Payment).where(Payment.gateway == gateway_name,
                                                             Payment.gateway_ref == event.gateway_ref))
    if payment is None:
        outcome = "unknown" if event.gateway_ref else "ignored"
        if event.gateway_ref:
            log.warning("tenant %s: %s webhook for unknown payment %s", tenant.slug, gateway_name,
                        event.gateway_ref)
    else:
        outcome = sync_payment(payment)
        if outcome == "already_credited":
            outcome = "duplicate"
    if outcome != "pending":
        # A pending answer is not remembered: the gateway's next delivery of the same event is looked at again.
        db.session.add(WebhookDelivery(gateway=gateway_name, event_id=event.event_id[:200], kind=event.kind[:60],
                                       outcome=outcome))
    return outcome


REFUND_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def refund(payment, amount, actor=None, key=None):
    """Refund part or all of a succeeded payment; the ledger records it once the gateway agrees.

    key: the caller's idempotency key (the admin form's, an API client's Idempotency-Key). The same key again
    returns the refund already made instead of refunding twice; a double click or a retried request is one
    refund. Refunds of one payment run one at a time (its row is locked)."""
    if key is not None and not REFUND_KEY.match(key):
        raise PaymentError("idempotency_key: 8 to 64 letters, digits, '-' or '_'")
    db.session.refresh(payment, with_for_update=True)
    if key is not None:
        done = db.session.scalar(sa.select(LedgerTransaction).where(
            LedgerTransaction.reference == f"refund:{payment.reference}:key:{key}"))
        if done is not None:
            return None
    if payment.status != SUCCEEDED:
        raise PaymentError("payment: only a succeeded payment can be refunded")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise PaymentError("amount: must be a positive whole number in minor units")
    if amount > payment.amount - payment.refunded:
        raise PaymentError(f"amount: at most {payment.amount - payment.refunded} can still be refunded")
    tenant = db.session.get(Tenant, payment.tenant_id)
    gateway, credentials = gateway_and_credentials(tenant, payment.gateway)
    if key is None:
        number = db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.reference.startswith(f"refund:{payment.reference}:", autoescape=True))) + 1
        gateway_reference = f"{payment.reference}-r{number}"
    else:  # a retry after a crash asks the gateway with the same reference, which it keeps to one refund
        gateway_reference = f"{payment.reference}-k{key}"
    try:
        result = gateway.refund(payment.gateway_ref, amount, gateway_reference, credentials)
    except GatewayError as error:
        raise PaymentError(f"refund: {error}") from None
    if result.status != SUCCEEDED:
        raise PaymentError(f"refund: the gateway reports the refund as {result.status}; nothing was recorded")
    reference = f"refund:{payment.reference}:" + (f"key:{key}" if key is not None else result.refund_ref)
    record("refund", reference, payment.currency,
           [Posting(payment.income_account, amount), Posting(f"gateway:{payment.gateway}", -amount)],
           memo=f"refund of {payment.reference}")
    payment.refunded += amount
    audit.record("payment.refunded", "payment", payment.id, amount=amount, refund_ref=result.refund_ref)
    return result


def notify_url(gateway_name):
    from flask import url_for

    return url_for("payments.webhook", gateway_name=gateway_name, _external=True)
