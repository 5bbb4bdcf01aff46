"""Property: after any sequence of donations, duplicate and out-of-order notifications, refunds, results
and ruleset changes, the ledger balances and every money total equals a recomputation from the payments
and pledges themselves."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindstride.accounts import services as accounts
from kindstride.activities.services import add_entered
from kindstride.challenges import services as challenges
from kindstride.db import db
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Pledge
from kindstride.ledger.services import problems
from kindstride.payments import services as payments
from kindstride.payments.models import Payment
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant, store_secret
from tests.support.fake_vnpay import start_fake_vnpay
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)
_numbers = itertools.count()

donate = st.tuples(st.just("donate"), st.integers(10_000, 2_000_000), st.booleans())  # amount, pays?
notify = st.tuples(st.just("notify"), st.integers(0, 20))  # (re)deliver an IPN for payment i
refund = st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 500_000))
run = st.tuples(st.just("run"), st.integers(1_000, 15_000))
rules = st.tuples(st.just("ruleset"), st.integers(1_000, 12_000))
operations = st.lists(st.one_of(donate, donate, notify, notify, refund, run, rules), min_size=1, max_size=16)


@pytest.fixture(scope="module")
def vnpay():
    fake = start_fake_vnpay()
    yield fake
    fake.stop()


@pytest.fixture
def money_app(make_app, vnpay):
    app = make_app(PLUGINS=["core_rules", "vnpay"], GATEWAY_ENDPOINTS={
        "vnpay.payment_url": vnpay.payment_url, "vnpay.api_url": vnpay.api_url})
    with app.app_context():
        yield app


def _setup(vnpay):
    tenant = create_tenant(f"money{next(_numbers)}", "Money", "vi", "VND", "Asia/Ho_Chi_Minh")
    tenant.settings = {**tenant.settings, "plugins": ["core_rules", "vnpay"],
                       "gateways": {"vnpay": {"tmn_code": vnpay.tmn_code}}}
    with tenant_scope(tenant.id):
        store_secret("gateway.vnpay.hash_secret", vnpay.hash_secret)
        runner = accounts.sign_up(f"r@{tenant.slug}.example", "Runner", "correct horse battery")
        sponsor = accounts.sign_up(f"s@{tenant.slug}.example", "Sponsor", "correct horse battery")
        challenge = challenges.create_challenge({
            "slug": "c", "title": "C", "sports": ["run"], "goal_km": 20,
            "registration_opens_at": (NOW - timedelta(days=2)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=2)).isoformat(),
            "counting_start": (NOW - timedelta(days=2)).isoformat(),
            "counting_end": (NOW + timedelta(days=2)).isoformat(), "preset": "vn-charity-run-2024"})
        challenges.register(challenge, runner, {})
        for data in ({"rule": "per_km", "params": {"rate_per_km": 1000, "cap": 15_000}},
                     {"rule": "milestone", "params": {"amount": 500_000}},
                     {"rule": "matching", "params": {"ratio": "1/2", "cap": 400_000}}):
            fundraising.add_pledge(challenge, sponsor, data)
        db.session.commit()
        return tenant.id, challenge.id, runner.id


def _apply(app, vnpay, tenant_id, challenge_id, runner_id, operation, started):
    from kindstride.accounts.models import User

    challenge = db.session.get(challenges.Challenge, challenge_id)
    kind = operation[0]
    if kind == "donate":
        _kind, amount, pays = operation
        donation, created = fundraising.donate(challenge, {
            "amount": amount, "currency": "VND", "gateway": "vnpay", "donor_name": "D", "donor_email": "d@x.example",
            "idempotency_key": f"key-{len(started):04d}-{amount}"}, "http://t.example/r", "http://t.example/n")
        db.session.commit()
        vnpay.next_outcome = "success" if pays else "declined"
        requests.get(created.redirect_url, allow_redirects=False, timeout=10)
        started.append(db.session.get(Payment, donation.payment_id).gateway_ref)
    elif kind == "notify" and started:
        gateway_ref = started[operation[1] % len(started)]
        payments.handle_webhook("vnpay", {}, b"", vnpay.ipn_params(gateway_ref))
    elif kind == "refund" and started:
        gateway_ref = started[operation[1] % len(started)]
        payment = db.session.scalar(sa.select(Payment).where(Payment.gateway_ref == gateway_ref))
        if payment.status == "succeeded" and payment.amount > payment.refunded:
            payments.refund(payment, min(operation[2], payment.amount - payment.refunded))
    elif kind == "run":
        add_entered(db.session.get(User, runner_id), {
            "sport": "run", "start": (NOW - timedelta(hours=1, minutes=len(started) + operation[1] % 997)).isoformat(),
            "moving_s": operation[1] * 0.3, "distance_m": operation[1], "has_gps": True,
            "split_paces_s_per_km": [300] * (operation[1] // 1000)}, source="api")
    elif kind == "ruleset":
        ruleset = challenges.current_ruleset(challenge)
        for entry in ruleset["validation"]:
            if entry["rule"] == "distance_limits":
                entry["params"]["min_m"] = operation[1]
        challenges.change_ruleset(challenge, ruleset, "property")
    db.session.commit()
    run_queued_jobs(app)
    fundraising.accrue_pledges(challenge_id)
    db.session.commit()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(operations)
def test_ledger_balances_and_totals_equal_a_recomputation(money_app, vnpay, operations):
    tenant_id, challenge_id, runner_id = _setup(vnpay)
    with tenant_scope(tenant_id):
        started = []
        for operation in operations:
            _apply(money_app, vnpay, tenant_id, challenge_id, runner_id, operation, started)
        assert problems() == []
        challenge = db.session.get(challenges.Challenge, challenge_id)
        totals = fundraising.money_totals(challenge)
        paid = db.session.scalars(sa.select(Payment).where(Payment.status == "succeeded")).all()
        assert totals.donated == sum(p.amount - p.refunded for p in paid)
        pledges = db.session.scalars(sa.select(Pledge)).all()
        assert totals.pledged == sum(fundraising.owed(p) for p in pledges)
        # Every succeeded payment was credited exactly once, however often it was notified.
        for payment in paid:
            assert len(fundraising.ledger_transactions_for(f"payment:{payment.reference}:captured")) == 1
