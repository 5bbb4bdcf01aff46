"""Beneficiaries, pledges, donations and the money figures shown on challenge pages (all ledger sums)."""

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from kindstride import audit
from kindstride.challenges.models import Registration, Team
from kindstride.db import db
from kindstride.fundraising.models import Beneficiary, Donation, Pledge
from kindstride.jobs import enqueue
from kindstride.ledger.models import LedgerEntry, LedgerTransaction
from kindstride.ledger.services import Posting, balance, balances_by_account, record
from kindstride.payments import services as payments
from kindstride.payments.models import Payment
from kindstride.plugins import plugin_host
from kindstride.rules.contract import PledgeFacts
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import require_tenant_id
from kindstride.tenancy.settings_schema import flatten_errors

log = logging.getLogger(__name__)

# The smallest gift, per currency, in minor units: below it the gateway fees eat the gift.
MINIMUM_DONATION = {"VND": 10_000, "USD": 100, "EUR": 100, "SGD": 100}
DONATION_PRESETS = {"VND": (50_000, 100_000, 200_000, 500_000), "USD": (1000, 2500, 5000, 10000)}


class FundraisingError(ValueError):
    def __init__(self, *errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def _load(schema, data):
    try:
        return schema.load(data)
    except ValidationError as error:
        raise FundraisingError(*flatten_errors(error.messages)) from None


def _tenant():
    return db.session.get(Tenant, require_tenant_id())


def donations_account(challenge_id, beneficiary_id=None):
    return f"donations:{challenge_id}:{beneficiary_id or 'general'}"


def pledge_account(pledge, beneficiary_id=None):
    """The income account of a pledge's accrual for one beneficiary ("general" when none was chosen)."""
    return f"pledges:{pledge.challenge_id}:{pledge.id}:{beneficiary_id or 'general'}"


def pledge_accounts(pledge):
    return f"pledges:{pledge.challenge_id}:{pledge.id}:"


def receivable_account(pledge):
    return f"receivable:pledge:{pledge.challenge_id}:{pledge.id}"


class BeneficiarySchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    website = fields.Url(load_default=None, allow_none=True)


def add_beneficiary(challenge, data) -> Beneficiary:
    values = _load(BeneficiarySchema(), data)
    if db.session.scalar(sa.select(Beneficiary.id).where(Beneficiary.challenge_id == challenge.id,
                                                         Beneficiary.name == values["name"])):
        raise FundraisingError(f"name: {values['name']!r} is already a beneficiary of this challenge")
    beneficiary = Beneficiary(challenge_id=challenge.id, **values)
    db.session.add(beneficiary)
    db.session.flush()
    audit.record("beneficiary.added", "beneficiary", beneficiary.id, name=beneficiary.name)
    return beneficiary


def beneficiaries_of(challenge):
    return db.session.scalars(sa.select(Beneficiary).where(Beneficiary.challenge_id == challenge.id)
                              .order_by(Beneficiary.name)).all()


class PledgeSchema(Schema):
    class Meta:
        unknown = RAISE

    rule = fields.String(required=True)
    params = fields.Dict(load_default=dict)
    sponsor_name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    beneficiary_id = fields.Integer(load_default=None, allow_none=True)
    team_id = fields.Integer(load_default=None, allow_none=True)
    division_id = fields.Integer(load_default=None, allow_none=True)


def add_pledge(challenge, sponsor, data) -> Pledge:
    from kindstride.challenges.models import Division

    values = _load(PledgeSchema(), data)
    rules = plugin_host().strategies("register_pledge_rules", _tenant())
    rule = rules.get(values["rule"])
    if rule is None:
        raise FundraisingError(f"rule: choose one of {', '.join(sorted(rules))}")
    try:
        params = rule.params_schema().load(values["params"])
    except ValidationError as error:
        raise FundraisingError(*flatten_errors(error.messages, prefix="params.")) from None
    for field, model in (("beneficiary_id", Beneficiary), ("team_id", Team), ("division_id", Division)):
        if values[field] is not None and db.session.scalar(
                sa.select(model.id).where(model.id == values[field], model.challenge_id == challenge.id)) is None:
            raise FundraisingError(f"{field}: not part of this challenge")
    if values["team_id"] and values["division_id"]:
        raise FundraisingError("team_id: a pledge is bound to one team or one division, not both")
    pledge = Pledge(challenge_id=challenge.id, sponsor_id=sponsor.id,
                    sponsor_name=values["sponsor_name"] or sponsor.name, rule=rule.name, params=params,
                    currency=_tenant().currency, beneficiary_id=values["beneficiary_id"],
                    team_id=values["team_id"], division_id=values["division_id"])
    db.session.add(pledge)
    db.session.flush()
    audit.record("pledge.added", "pledge", pledge.id, rule=rule.name)
    enqueue(accrue_pledges, challenge.id)
    return pledge


def _scope_distance(pledge):
    from kindstride.leaderboards.models import ParticipantTotal, TeamTotal

    if pledge.team_id:
        return db.session.scalar(sa.select(TeamTotal.distance_m).where(TeamTotal.team_id == pledge.team_id)) or 0
    if pledge.division_id:
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(TeamTotal.distance_m), 0))
                                 .where(TeamTotal.division_id == pledge.division_id))
    return db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(ParticipantTotal.distance_m), 0))
                             .where(ParticipantTotal.challenge_id == pledge.challenge_id))


def owed(pledge) -> int:
    from kindstride.challenges.models import Challenge
    from kindstride.leaderboards.services import challenge_totals

    challenge = db.session.get(Challenge, pledge.challenge_id)
    rule = plugin_host().strategies("register_pledge_rules", _tenant()).get(pledge.rule)
    if rule is None:
        raise FundraisingError(f"rule: pledge rule {pledge.rule!r} is not installed: accrual stops")
    facts = PledgeFacts(currency=pledge.currency, scope_distance_m=int(_scope_distance(pledge)),
                        challenge_distance_m=challenge_totals(challenge).distance_m, goal_m=challenge.goal_m,
                        donations=-balance(f"donations:{challenge.id}:", pledge.currency))
    # Clamped to what a payment may be: a huge rate over a huge distance must not overflow the ledger's bigint.
    return min(max(int(rule.owed(rule.params_schema().load(pledge.params), facts)), 0), payments.MAX_AMOUNT)


def accrued(pledge) -> int:
    return -balance(pledge_accounts(pledge), pledge.currency)


def allocation(pledge, amount) -> dict:
    """How a pledge's amount is shared between beneficiaries: all to the one it is bound to, else in
    proportion to the counted metres of the participants who chose each beneficiary (None: no choice).
    Integer shares by largest remainder, so they add up to the amount exactly."""
    from kindstride.leaderboards.models import ParticipantTotal

    if pledge.beneficiary_id or amount == 0:
        return {pledge.beneficiary_id: amount}
    query = (sa.select(Registration.beneficiary_id, sa.func.sum(ParticipantTotal.distance_m))
             .join(ParticipantTotal, ParticipantTotal.registration_id == Registration.id)
             .where(Registration.challenge_id == pledge.challenge_id).group_by(Registration.beneficiary_id))
    if pledge.team_id:
        query = query.where(ParticipantTotal.team_id == pledge.team_id)
    elif pledge.division_id:
        division_teams = sa.select(Team.id).where(Team.division_id == pledge.division_id)
        query = query.where(ParticipantTotal.team_id.in_(division_teams))
    weights = {beneficiary: int(metres or 0) for beneficiary, metres in db.session.execute(query)}
    total = sum(weights.values())
    if total == 0:
        return {None: amount}
    shares = {key: amount * weight // total for key, weight in weights.items()}
    by_remainder = sorted(weights, key=lambda key: (-(amount * weights[key] % total), str(key)))
    for key in by_remainder[: amount - sum(shares.values())]:
        shares[key] += 1
    return {key: share for key, share in shares.items() if share}


def accrue_pledges(challenge_id):
    """A tenant job: bring every pledge's accrual, per beneficiary, to what it owes now (idempotent).

    The challenge's pledges are locked first (in id order), so two of these jobs run one after the other: the
    second reads the balances the first committed, and never posts the same difference again."""
    pledges = db.session.scalars(sa.select(Pledge).where(Pledge.challenge_id == challenge_id)
                                 .order_by(Pledge.id).with_for_update()).all()
    for pledge in pledges:
        try:
            amount = owed(pledge)
        except (FundraisingError, ValidationError) as error:  # its rule gone or its params no longer valid: it
            # stops, the other pledges still accrue
            log.warning("pledge %s not accrued: %s", pledge.id, error)
            continue
        targets = allocation(pledge, amount)
        current = {account.rsplit(":", 1)[1]: -amount for (account, currency), amount
                   in balances_by_account(pledge_accounts(pledge)).items() if currency == pledge.currency}
        wanted = {str(key or "general"): amount for key, amount in targets.items()}
        deltas = {key: wanted.get(key, 0) - current.get(key, 0) for key in set(wanted) | set(current)}
        postings = [Posting(f"{pledge_accounts(pledge)}{key}", -delta) for key, delta in sorted(deltas.items())
                    if delta]
        if not postings:
            continue
        total_delta = sum(deltas.values())
        if total_delta:
            postings.append(Posting(receivable_account(pledge), total_delta))
        # The reference names the step (how many accruals came before) and the state reached: two jobs
        # running at once compute the same reference and the ledger records the step once.
        steps = db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.reference.startswith(f"pledge:{pledge.id}:accrual:", autoescape=True)))
        state = ",".join(f"{key}={amount}" for key, amount in sorted(wanted.items())) or "0"
        with db.session.begin_nested():
            record("pledge_accrual", f"pledge:{pledge.id}:accrual:{steps}:{state}"[:200], pledge.currency, postings)


PAYMENT_REFERENCE_LENGTH = 100  # a bank transfer's reference, as the sponsor wrote it


def record_pledge_payment(pledge, amount, reference):
    """The tenant received a sponsor's payment (bank transfer) against a pledge."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise FundraisingError("amount: must be a positive whole number in minor units")
    reference = (reference or "").strip()
    if not 1 <= len(reference) <= PAYMENT_REFERENCE_LENGTH:
        raise FundraisingError(f"reference: 1 to {PAYMENT_REFERENCE_LENGTH} characters")
    ledger_reference = f"pledge:{pledge.id}:paid:{reference}"
    recorded = db.session.scalar(sa.select(LedgerTransaction).where(LedgerTransaction.reference == ledger_reference))
    if recorded is not None:  # the same payment sent again: recorded once; another amount is a mistake
        paid = db.session.scalar(sa.select(sa.func.sum(LedgerEntry.amount)).where(
            LedgerEntry.transaction_id == recorded.id, LedgerEntry.account == receivable_account(pledge)))
        if paid != -amount:
            raise FundraisingError("reference: already recorded for another amount on this pledge")
        return recorded
    outstanding = balance(receivable_account(pledge), pledge.currency)
    if amount > outstanding:
        raise FundraisingError(f"amount: only {outstanding} is outstanding on this pledge")
    transaction = record("pledge_payment", ledger_reference, pledge.currency,
                         [Posting("bank", amount), Posting(receivable_account(pledge), -amount)])
    audit.record("pledge.paid", "pledge", pledge.id, amount=amount, reference=reference)
    return transaction


class DonationSchema(Schema):
    class Meta:
        unknown = RAISE

    amount = fields.Integer(required=True, strict=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    gateway = fields.String(required=True)
    donor_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    donor_email = fields.Email(required=True)
    anonymous = fields.Boolean(load_default=False)
    message = fields.String(load_default="", validate=validate.Length(max=1000))
    team_id = fields.Integer(load_default=None, allow_none=True)
    registration_id = fields.Integer(load_default=None, allow_none=True)
    beneficiary_id = fields.Integer(load_default=None, allow_none=True)
    idempotency_key = fields.String(required=True, validate=validate.Length(min=8, max=64))


def donate(challenge, data, return_url, notify_url, payer_ip="127.0.0.1"):
    """Start a donation: no account needed. Returns (donation, created payment or None when repeated)."""
    values = _load(DonationSchema(), data)
    tenant = _tenant()
    if values["currency"] != tenant.currency:
        raise FundraisingError(f"currency: donations here are in {tenant.currency}")
    minimum = MINIMUM_DONATION.get(values["currency"], 1)
    if values["amount"] < minimum:
        raise FundraisingError(f"amount: the smallest donation is {minimum}")
    for field, model in (("team_id", Team), ("registration_id", Registration), ("beneficiary_id", Beneficiary)):
        if values[field] is not None and db.session.scalar(
                sa.select(model.id).where(model.id == values[field], model.challenge_id == challenge.id)) is None:
            raise FundraisingError(f"{field}: not part of this challenge")
    try:
        payment, created = payments.start_payment(
            purpose="donation", income_account=donations_account(challenge.id, values["beneficiary_id"]),
            amount=values["amount"], currency=values["currency"], gateway_name=values["gateway"],
            idempotency_key=values["idempotency_key"], description=f"{tenant.name}: {challenge.title}",
            return_url=return_url, notify_url=notify_url, payer_email=values["donor_email"], payer_ip=payer_ip,
            locale=tenant.locale)
    except payments.PaymentError as error:
        raise FundraisingError(*error.errors) from None
    donation = db.session.scalar(sa.select(Donation).where(Donation.payment_id == payment.id))
    if donation is None:
        donation = Donation(challenge_id=challenge.id, payment_id=payment.id,
                            **{k: v for k, v in values.items() if k not in ("gateway", "idempotency_key")})
        db.session.add(donation)
        db.session.flush()
    return donation, created


def payment_succeeded(payment):
    """Called once, when a payment is first credited: follow-up work only."""
    if payment.purpose == "donation":
        donation = db.session.scalar(sa.select(Donation).where(Donation.payment_id == payment.id))
        from kindstride.fundraising.receipts import send_donation_receipt

        enqueue(send_donation_receipt, donation.id, queue="high")
        enqueue(accrue_pledges, donation.challenge_id)  # matching pledges follow donations
        plugin_host().manager.hook.donation_succeeded(tenant_id=donation.tenant_id, donation_id=donation.id)
    elif payment.purpose == "entry_fee":
        from kindstride.activities.evaluation import reevaluate_registration
        from kindstride.challenges.models import Challenge

        registration = db.session.scalar(sa.select(Registration).where(Registration.payment_id == payment.id))
        if registration is not None and registration.status != "active":
            registration.status = "active"
            # Activities recorded while the payment was pending count from now on.
            reevaluate_registration(db.session.get(Challenge, registration.challenge_id), registration)
            audit.record("registration.paid", "registration", registration.id, payment=payment.reference)


@dataclass(frozen=True)
class MoneyTotals:
    currency: str
    donated: int
    pledged: int
    by_beneficiary: dict  # beneficiary id or None -> donated amount
    pledged_by_beneficiary: dict  # beneficiary id or None -> pledged amount allocated to it

    @property
    def total(self):
        return self.donated + self.pledged


def _by_beneficiary(prefix, currency):
    amounts = {}
    for (account, account_currency), amount in balances_by_account(prefix).items():
        if account_currency == currency:
            key = account.rsplit(":", 1)[1]
            beneficiary = None if key == "general" else int(key)
            amounts[beneficiary] = amounts.get(beneficiary, 0) - amount
    return amounts


def money_totals(challenge) -> MoneyTotals:
    currency = _tenant().currency
    donated = _by_beneficiary(f"donations:{challenge.id}:", currency)
    pledged = _by_beneficiary(f"pledges:{challenge.id}:", currency)
    return MoneyTotals(currency=currency, donated=sum(donated.values()), pledged=sum(pledged.values()),
                       by_beneficiary=donated, pledged_by_beneficiary=pledged)


def public_donations(challenge, limit=20):
    """Recent succeeded donations for public lists; anonymous donors stay anonymous."""
    rows = db.session.execute(
        sa.select(Donation, Payment.status).join(Payment, Payment.id == Donation.payment_id)
        .where(Donation.challenge_id == challenge.id, Payment.status == "succeeded")
        .order_by(Donation.created_at.desc()).limit(limit)).all()
    return [{"name": None if d.anonymous else d.donor_name, "amount": d.amount, "currency": d.currency,
             "message": d.message, "created_at": d.created_at} for d, _status in rows]


def ledger_transactions_for(reference_prefix):
    """The ledger transactions whose reference starts with the prefix (a payment's, a pledge's)."""
    return db.session.scalars(sa.select(LedgerTransaction).where(
        LedgerTransaction.reference.startswith(reference_prefix, autoescape=True))).all()
