"""Gateway endpoints on each tenant's site: webhooks (IPN) and the payer's return."""

import logging

from flask import Blueprint, abort, g, redirect, request, url_for
from sqlalchemy.exc import IntegrityError, OperationalError

from kindstride.db import db
from kindstride.payments import services
from kindstride.payments.contract import GatewayError, SignatureError
from kindstride.security import csrf
from kindstride.web.sites import tenant_site_only

log = logging.getLogger(__name__)
bp = Blueprint("payments", __name__, url_prefix="/payments")
bp.before_request(tenant_site_only)


@bp.route("/<gateway_name>/webhook", methods=["GET", "POST"])
@csrf.exempt
def webhook(gateway_name):
    """Verified, deduplicated, and answered non-2xx when we could not record it, so the gateway retries."""
    try:
        gateway, _credentials = services.gateway_and_credentials(g.tenant, gateway_name)
    except services.PaymentError:
        abort(404)
    try:
        outcome = services.handle_webhook(gateway_name, dict(request.headers), request.get_data(),
                                          request.args.to_dict())
        db.session.commit()
    except (GatewayError, OperationalError, IntegrityError) as error:
        # IntegrityError: the same notification being recorded by a concurrent delivery. Not acknowledged
        # either: the retry finds it recorded (or records it, had the other delivery failed after all).
        db.session.rollback()
        log.warning("tenant %s: %s webhook not recorded, gateway will retry: %s", g.tenant.slug, gateway_name,
                    type(error).__name__ if isinstance(error, IntegrityError | OperationalError) else error)
        outcome = "unavailable"
    body, status = gateway.webhook_response(outcome)
    return body, status


@bp.route("/<gateway_name>/return")
def payer_return(gateway_name):
    """The payer's browser coming back: the page shows what the gateway itself says now."""
    from kindstride.payments.models import Payment

    try:
        gateway, credentials = services.gateway_and_credentials(g.tenant, gateway_name)
        result = gateway.parse_return(request.args.to_dict(), credentials)
    except (services.PaymentError, SignatureError):
        abort(400)
    payment = db.session.scalar(db.select(Payment).where(Payment.gateway == gateway_name,
                                                         Payment.gateway_ref == result.gateway_ref))
    if payment is None:
        abort(404)
    try:
        services.sync_payment(payment)
        db.session.commit()
    except (GatewayError, IntegrityError) as error:
        # The gateway unreachable or answering badly, or the webhook crediting the same payment right now: the
        # status page shows what is recorded, and the webhook (or the next visit) brings it up to date.
        db.session.rollback()
        log.warning("payer return for %s not synced: %s", payment.reference,
                    type(error).__name__ if isinstance(error, IntegrityError) else error)
    return redirect(url_for("fundraising.payment_status", reference=payment.reference))
