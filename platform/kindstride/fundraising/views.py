"""Public fundraising pages: where a donor lands after paying."""

import sqlalchemy as sa
from flask import Blueprint, abort, render_template

from kindstride.db import db
from kindstride.fundraising.models import Donation
from kindstride.payments.models import Payment
from kindstride.web.sites import tenant_site_only

bp = Blueprint("fundraising", __name__, template_folder="templates")
bp.before_request(tenant_site_only)


@bp.route("/donations/<reference>")
def payment_status(reference):
    payment = db.session.scalar(sa.select(Payment).where(Payment.reference == reference))
    if payment is None:
        abort(404)
    donation = db.session.scalar(sa.select(Donation).where(Donation.payment_id == payment.id))
    return render_template("fundraising/payment_status.html", payment=payment, donation=donation)
