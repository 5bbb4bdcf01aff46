"""API: beneficiaries, pledges, donations, refunds, the money totals of a challenge, reconciliation."""

import sqlalchemy as sa
from flask import g, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from kindstride.api.auth import BEARER, token_required
from kindstride.api.common import challenge_or_404, refuse
from kindstride.db import db
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Beneficiary, Pledge
from kindstride.payments import services as payments
from kindstride.payments.models import Payment
from kindstride.payments.reconciliation import reconcile
from kindstride.web.sites import tenant_site_only

blp = Blueprint("api_fundraising", __name__, url_prefix="/api/v1", description="Pledges, donations, money")
blp.before_request(tenant_site_only)


class BeneficiaryOut(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    website = fields.String(allow_none=True)


class PledgeOut(Schema):
    id = fields.Integer()
    sponsor_name = fields.String()
    rule = fields.String()
    params = fields.Dict()
    currency = fields.String()
    beneficiary_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    division_id = fields.Integer(allow_none=True)
    accrued = fields.Integer()
    paid = fields.Integer()


class MoneyOut(Schema):
    currency = fields.String()
    donated = fields.Integer()
    pledged = fields.Integer()
    total = fields.Integer()
    by_beneficiary = fields.List(fields.Dict())


class DonationStarted(Schema):
    donation_id = fields.Integer()
    reference = fields.String()
    status = fields.String()
    redirect_url = fields.String(allow_none=True)
    client_secret = fields.String(allow_none=True)


class PaymentOut(Schema):
    reference = fields.String()
    purpose = fields.String()
    gateway = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    status = fields.String()
    refunded = fields.Integer()
    failure_message = fields.String(allow_none=True)


class RefundIn(Schema):
    amount = fields.Integer(required=True, strict=True)


class PledgePaymentIn(Schema):
    amount = fields.Integer(required=True, strict=True)
    reference = fields.String(required=True, validate=validate.Length(min=1, max=100))


class ReconciliationRow(Schema):
    reference = fields.String()
    gateway = fields.String()
    gateway_status = fields.String()
    gateway_amount = fields.Integer(allow_none=True)
    gateway_refunded = fields.Integer(allow_none=True)
    ledger_captured = fields.Integer()
    ledger_refunded = fields.Integer()
    matches = fields.Boolean()


def _require(*roles):
    if not g.roles.intersection(roles):
        abort(403, message=f"Authorization: this needs the {' or '.join(roles)} role")


def _pledge_out(pledge):
    from kindstride.ledger.services import balance

    accrued = fundraising.accrued(pledge)
    outstanding = balance(fundraising.receivable_account(pledge), pledge.currency)
    return {**{name: getattr(pledge, name) for name in PledgeOut._declared_fields if hasattr(pledge, name)},
            "accrued": accrued, "paid": accrued - outstanding}


@blp.route("/challenges/<slug>/beneficiaries")
class Beneficiaries(MethodView):
    @blp.response(200, BeneficiaryOut(many=True))
    def get(self, slug):
        """The partner charities of a challenge."""
        return fundraising.beneficiaries_of(challenge_or_404(slug))

    @blp.doc(**BEARER)
    @token_required("admin")
    @blp.arguments(Schema.from_dict({}, name="BeneficiaryIn")(unknown="include"), location="json")
    @blp.response(201, BeneficiaryOut)
    def post(self, data, slug):
        """Add a beneficiary (name, description, website)."""
        _require("admin")
        try:
            beneficiary = fundraising.add_beneficiary(challenge_or_404(slug), data)
        except fundraising.FundraisingError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return beneficiary


@blp.route("/challenges/<slug>/pledges")
class Pledges(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, PledgeOut(many=True))
    @token_required("read")
    def get(self, slug):
        """Pledges with what they accrued and what was paid: a sponsor sees their own, an admin all."""
        challenge = challenge_or_404(slug)
        query = sa.select(Pledge).where(Pledge.challenge_id == challenge.id).order_by(Pledge.id)
        if "admin" not in g.roles:
            query = query.where(Pledge.sponsor_id == g.user.id)
        return [_pledge_out(p) for p in db.session.scalars(query)]

    @blp.doc(**BEARER)
    @token_required("pledges:write")
    @blp.arguments(Schema.from_dict({}, name="PledgeIn")(unknown="include"), location="json")
    @blp.response(201, PledgeOut)
    def post(self, data, slug):
        """Pledge with a pledge rule (per_km, milestone, matching), optionally bound to a team or division."""
        try:
            pledge = fundraising.add_pledge(challenge_or_404(slug), g.user, data)
        except fundraising.FundraisingError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return _pledge_out(pledge)


@blp.route("/pledges/<int:pledge_id>/payments")
class PledgePayments(MethodView):
    @blp.doc(**BEARER)
    @token_required("admin")
    @blp.arguments(PledgePaymentIn)
    @blp.response(201, PledgeOut)
    def post(self, data, pledge_id):
        """Record a sponsor's payment received outside a gateway (e.g. a bank transfer)."""
        _require("admin")
        pledge = db.session.get(Pledge, pledge_id)
        if pledge is None:
            abort(404, message="pledge_id: no such pledge")
        try:
            fundraising.record_pledge_payment(pledge, data["amount"], data["reference"])
        except fundraising.FundraisingError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return _pledge_out(pledge)


@blp.route("/challenges/<slug>/money")
class Money(MethodView):
    @blp.response(200, MoneyOut)
    def get(self, slug):
        """Donated, pledged and total so far (ledger sums), and donations per beneficiary."""
        totals = fundraising.money_totals(challenge_or_404(slug))
        names = {b.id: b.name for b in db.session.scalars(sa.select(Beneficiary))}
        return {"currency": totals.currency, "donated": totals.donated, "pledged": totals.pledged,
                "total": totals.total,
                "by_beneficiary": [{"beneficiary_id": key, "name": names.get(key),
                                    "donated": totals.by_beneficiary.get(key, 0),
                                    "pledged": totals.pledged_by_beneficiary.get(key, 0)}
                                   for key in sorted(set(totals.by_beneficiary) | set(totals.pledged_by_beneficiary),
                                                     key=lambda key: key or 0)]}


@blp.route("/challenges/<slug>/donations")
class Donations(MethodView):
    @blp.response(200, Schema.from_dict({"name": fields.String(allow_none=True), "amount": fields.Integer(),
                                         "currency": fields.String(), "message": fields.String(),
                                         "created_at": fields.DateTime()}, name="PublicDonation")(many=True))
    def get(self, slug):
        """Recent donations; anonymous donors are shown without a name."""
        return fundraising.public_donations(challenge_or_404(slug))

    @blp.arguments(Schema.from_dict({}, name="DonationIn")(unknown="include"), location="json")
    @blp.response(201, DonationStarted)
    def post(self, data, slug):
        """Start a donation (no account needed): amount in minor units, currency, gateway, donor_name,
        donor_email, anonymous, message, team_id / registration_id / beneficiary_id, idempotency_key."""
        challenge = challenge_or_404(slug)
        gateway = data.get("gateway") if isinstance(data.get("gateway"), str) else ""
        try:
            donation, created = fundraising.donate(
                challenge, data, return_url=url_for("payments.payer_return", gateway_name=gateway or "none",
                                                    _external=True),
                notify_url=url_for("payments.webhook", gateway_name=gateway or "none", _external=True),
                payer_ip=request.remote_addr or "127.0.0.1")
        except fundraising.FundraisingError as error:
            db.session.rollback()
            refuse(error)
        except payments.GatewayError as error:
            db.session.rollback()
            abort(502, message=f"gateway: {error}")
        db.session.commit()
        payment = db.session.get(Payment, donation.payment_id)
        return {"donation_id": donation.id, "reference": payment.reference, "status": payment.status,
                "redirect_url": created.redirect_url if created else None,
                "client_secret": created.client_secret if created else None}


@blp.route("/payments/<reference>")
class PaymentResource(MethodView):
    @blp.response(200, PaymentOut)
    def get(self, reference):
        """A payment's status, by its unguessable reference."""
        payment = db.session.scalar(sa.select(Payment).where(Payment.reference == reference))
        if payment is None:
            abort(404, message="reference: no such payment")
        return payment


@blp.route("/payments/<reference>/refunds")
class Refunds(MethodView):
    @blp.doc(**BEARER)
    @token_required("admin")
    @blp.arguments(RefundIn)
    @blp.response(201, PaymentOut)
    def post(self, data, reference):
        """Refund all or part of a payment. Send an Idempotency-Key header (8-64 of A-Z a-z 0-9 - _) to make a
        retry safe: the same key again answers with the payment as refunded once."""
        _require("admin")
        payment = db.session.scalar(sa.select(Payment).where(Payment.reference == reference))
        if payment is None:
            abort(404, message="reference: no such payment")
        try:
            payments.refund(payment, data["amount"], g.user, key=request.headers.get("Idempotency-Key"))
        except payments.PaymentError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return payment


@blp.route("/reconciliation")
class Reconciliation(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, ReconciliationRow(many=True))
    @token_required("admin")
    def get(self):
        """Every gateway payment next to what the ledger recorded for it."""
        _require("admin")
        return reconcile()
