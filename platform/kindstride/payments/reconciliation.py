"""Gateway payments against the ledger: what each gateway says now, next to what was recorded."""

import sqlalchemy as sa

from kindstride.db import db
from kindstride.ledger.models import LedgerEntry, LedgerTransaction
from kindstride.payments.contract import GatewayError
from kindstride.payments.models import Payment
from kindstride.payments.services import gateway_and_credentials
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import require_tenant_id


def _ledger_amount(prefix, account):
    return int(db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.reference.startswith(prefix, autoescape=True), LedgerEntry.account == account)))


def reconcile():
    tenant = db.session.get(Tenant, require_tenant_id())
    rows = []
    for payment in db.session.scalars(sa.select(Payment).order_by(Payment.created_at, Payment.id)):
        captured = _ledger_amount(f"payment:{payment.reference}:captured", f"gateway:{payment.gateway}")
        refunded = -_ledger_amount(f"refund:{payment.reference}:", f"gateway:{payment.gateway}")
        try:
            gateway, credentials = gateway_and_credentials(tenant, payment.gateway)
            status = gateway.fetch_payment(payment.gateway_ref, credentials) if payment.gateway_ref else None
        except (GatewayError, ValueError) as error:
            rows.append({"reference": payment.reference, "gateway": payment.gateway,
                         "gateway_status": f"unreachable: {error}", "gateway_amount": None,
                         "gateway_refunded": None, "ledger_captured": captured, "ledger_refunded": refunded,
                         "matches": False})
            continue
        gateway_captured = status.amount if status and status.status == "succeeded" else 0
        rows.append({
            "reference": payment.reference, "gateway": payment.gateway,
            "gateway_status": status.status if status else "not started",
            "gateway_amount": gateway_captured, "gateway_refunded": status.refunded if status else 0,
            "ledger_captured": captured, "ledger_refunded": refunded,
            # A gateway that does not report refunds (refunded == 0) is matched on captures only.
            "matches": gateway_captured == captured and (not status or not status.refunded
                                                         or status.refunded == refunded),
        })
    return rows
