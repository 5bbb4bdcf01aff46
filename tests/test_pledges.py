"""Sponsor pledges: per km with a cap, a milestone at the goal, matching online donations, team-bound;
accrued into the ledger as the results change, exactly."""

from datetime import UTC, datetime, timedelta

import pytest

from kindstride.accounts import services as accounts
from kindstride.activities.services import add_entered
from kindstride.challenges import services as challenges
from kindstride.db import db
from kindstride.fundraising import services as fundraising
from kindstride.ledger.services import Posting, problems, record
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def event(app, tenants):
    """Tenant beta (VND): a 10 km goal challenge, two runners in two teams, and a sponsor."""
    with tenant_scope(tenants["beta"]):
        people = [accounts.sign_up(f"{name}@beta.example", name.title(), "correct horse battery")
                  for name in ("lan", "minh", "sponsor")]
        accounts.grant_role(people[2], "sponsor")
        challenge = challenges.create_challenge({
            "slug": "run", "title": "Chạy", "sports": ["run"], "goal_km": 10, "divisions": ["Company"],
            "registration_opens_at": (NOW - timedelta(days=3)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=3)).isoformat(),
            "counting_start": (NOW - timedelta(days=3)).isoformat(),
            "counting_end": (NOW + timedelta(days=3)).isoformat(), "preset": "vn-charity-run-2024"})
        division = challenges.divisions_of(challenge)[0].id
        teams = [challenges.create_team(challenge, name, division) for name in ("Red", "Blue")]
        for person, team in zip(people[:2], teams, strict=True):
            challenges.register(challenge, person, {"team_id": team.id})
        db.session.commit()
        team_ids = [team.id for team in teams]
    return {"tenant": tenants["beta"], "challenge": challenge, "people": people, "team_ids": team_ids}


def _run(app, event, runner, metres):
    with tenant_scope(event["tenant"]):
        add_entered(event["people"][runner], {
            "sport": "run", "start": (NOW - timedelta(hours=5 + metres / 1000)).isoformat(),
            "moving_s": metres * 0.3, "distance_m": metres, "has_gps": True,
            "split_paces_s_per_km": [300] * (metres // 1000)}, source="api")
        db.session.commit()
    run_queued_jobs(app)


def _pledge(app, event, data):
    with tenant_scope(event["tenant"]):
        pledge = fundraising.add_pledge(event["challenge"], event["people"][2], data)
        db.session.commit()
    run_queued_jobs(app)
    return pledge


def _accrue(app, event):
    with tenant_scope(event["tenant"]):
        fundraising.accrue_pledges(event["challenge"].id)
        db.session.commit()


def _accrued(event, pledge):
    with tenant_scope(event["tenant"]):
        return fundraising.accrued(pledge)


def test_per_km_pledge_is_rate_times_valid_km_capped(app, event):
    per_km = _pledge(app, event, {"rule": "per_km", "params": {"rate_per_km": 1000, "cap": 12_000}})
    _run(app, event, 0, 7_345)
    _accrue(app, event)
    assert _accrued(event, per_km) == 7_345  # 1,000 VND per km over 7.345 km, exactly
    _run(app, event, 1, 8_000)
    _accrue(app, event)
    assert _accrued(event, per_km) == 12_000  # capped
    with tenant_scope(event["tenant"]):
        assert problems() == []
        assert fundraising.money_totals(event["challenge"]).pledged == 12_000


def test_milestone_pays_exactly_at_the_goal(app, event):
    milestone = _pledge(app, event, {"rule": "milestone", "params": {"amount": 5_000_000}})
    _run(app, event, 0, 9_999)
    _accrue(app, event)
    assert _accrued(event, milestone) == 0  # one metre short
    _run(app, event, 1, 1_000)
    _accrue(app, event)
    assert _accrued(event, milestone) == 5_000_000


def test_matching_follows_donations_up_to_its_cap(app, event):
    matching = _pledge(app, event, {"rule": "matching", "params": {"ratio": "1", "cap": 300_000}})
    with tenant_scope(event["tenant"]):
        account = fundraising.donations_account(event["challenge"].id)
        record("payment", "payment:d1:captured", "VND", [Posting("gateway:vnpay", 200_000), Posting(account, -200_000)])
        db.session.commit()
    _accrue(app, event)
    assert _accrued(event, matching) == 200_000
    with tenant_scope(event["tenant"]):
        record("payment", "payment:d2:captured", "VND", [Posting("gateway:vnpay", 150_000), Posting(account, -150_000)])
        db.session.commit()
    _accrue(app, event)
    assert _accrued(event, matching) == 300_000


def test_a_team_bound_pledge_counts_only_that_team(app, event):
    red = _pledge(app, event, {"rule": "per_km", "params": {"rate_per_km": 2000}, "team_id": event["team_ids"][0]})
    _run(app, event, 0, 3_000)
    _run(app, event, 1, 5_000)
    _accrue(app, event)
    assert _accrued(event, red) == 6_000


def test_accrual_goes_down_when_results_change_and_the_ledger_keeps_history(app, event):
    per_km = _pledge(app, event, {"rule": "per_km", "params": {"rate_per_km": 1000}})
    _run(app, event, 0, 4_000)
    _accrue(app, event)
    with tenant_scope(event["tenant"]):
        ruleset = challenges.current_ruleset(event["challenge"])
        for entry in ruleset["validation"]:
            if entry["rule"] == "distance_limits":
                entry["params"]["min_m"] = 5_000
        challenges.change_ruleset(event["challenge"], ruleset, "5 km minimum")
        db.session.commit()
    run_queued_jobs(app)
    _accrue(app, event)
    assert _accrued(event, per_km) == 0
    with tenant_scope(event["tenant"]):
        assert len(fundraising.ledger_transactions_for(f"pledge:{per_km.id}:")) == 2  # up, then down


def test_bad_pledges_name_the_field(app, event):
    with tenant_scope(event["tenant"]):
        for data, message in (
            ({"rule": "nope"}, "rule: choose one of"),
            ({"rule": "per_km", "params": {"rate_per_km": -5}}, "params.rate_per_km"),
            ({"rule": "per_km", "params": {"rate_per_km": 5}, "team_id": 99999}, "team_id: not part of"),
        ):
            with pytest.raises(fundraising.FundraisingError, match=message):
                fundraising.add_pledge(event["challenge"], event["people"][2], data)
            db.session.rollback()


def test_an_unbound_pledge_is_shared_by_the_beneficiaries_runners_picked(app, tenants):
    with tenant_scope(tenants["beta"]):
        people = [accounts.sign_up(f"{name}@beta.example", name.title(), "correct horse battery")
                  for name in ("lan", "minh", "hoa", "sponsor")]
        challenge = challenges.create_challenge({
            "slug": "pick", "title": "Pick", "sports": ["run"],
            "registration_opens_at": (NOW - timedelta(days=3)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=3)).isoformat(),
            "counting_start": (NOW - timedelta(days=3)).isoformat(),
            "counting_end": (NOW + timedelta(days=3)).isoformat(), "preset": "vn-charity-run-2024"})
        hearts = fundraising.add_beneficiary(challenge, {"name": "Hearts"})
        books = fundraising.add_beneficiary(challenge, {"name": "Books"})
        db.session.commit()
        with pytest.raises(challenges.ChallengeError, match="beneficiary_id: not a beneficiary"):
            challenges.register(challenge, people[0], {"beneficiary_id": 999999})
        db.session.rollback()
        for person, beneficiary, metres in ((people[0], hearts.id, 5_000), (people[1], books.id, 2_001),
                                            (people[2], None, 3_000)):
            challenges.register(challenge, person, {"beneficiary_id": beneficiary})
            add_entered(person, {"sport": "run", "start": (NOW - timedelta(hours=6)).isoformat(),
                                 "moving_s": metres * 0.3, "distance_m": metres, "has_gps": True,
                                 "split_paces_s_per_km": [300] * (metres // 1000)}, source="api")
        pledge = fundraising.add_pledge(challenge, people[3], {"rule": "per_km", "params": {"rate_per_km": 1000}})
        db.session.commit()
        hearts_id, books_id = hearts.id, books.id
    run_queued_jobs(app)
    with tenant_scope(tenants["beta"]):
        fundraising.accrue_pledges(challenge.id)
        fundraising.accrue_pledges(challenge.id)  # again: nothing more
        db.session.commit()
        totals = fundraising.money_totals(db.session.get(challenges.Challenge, challenge.id))
        # 10,001 m at 1,000 VND/km = 10,001 VND, shared 5,000 : 2,001 : 3,000 by metres, to the unit.
        assert totals.pledged == 10_001
        assert totals.pledged_by_beneficiary == {hearts_id: 5_000, books_id: 2_001, None: 3_000}
        assert fundraising.accrued(pledge) == 10_001 and problems() == []


def test_a_huge_pledge_is_clamped_and_a_broken_one_does_not_stop_the_others(app, event):
    from kindstride.payments.services import MAX_AMOUNT

    huge = _pledge(app, event, {"rule": "per_km", "params": {"rate_per_km": 10**15}})
    plain = _pledge(app, event, {"rule": "per_km", "params": {"rate_per_km": 1000}})
    with tenant_scope(event["tenant"]):
        broken = fundraising.add_pledge(event["challenge"], event["people"][2],
                                        {"rule": "per_km", "params": {"rate_per_km": 1000}})
        broken.rule = "uninstalled_rule"
        db.session.commit()
    _run(app, event, 0, 5_000)
    _accrue(app, event)
    assert _accrued(event, huge) == MAX_AMOUNT  # 5 x 10^15, and at 700,000 km past the ledger's bigint
    assert _accrued(event, plain) == 5_000 and _accrued(event, broken) == 0
    with tenant_scope(event["tenant"]):
        assert problems() == []


def test_a_pledge_payment_is_recorded_once_per_reference_and_bad_references_are_refused(app, event):
    pledge = _pledge(app, event, {"rule": "per_km", "params": {"rate_per_km": 1000}})
    _run(app, event, 0, 5_000)
    _accrue(app, event)
    with tenant_scope(event["tenant"]):
        first = fundraising.record_pledge_payment(pledge, 5_000, "UNC 42")
        db.session.commit()
        # Sent again after it settled everything: the same transaction, not "only 0 outstanding".
        assert fundraising.record_pledge_payment(pledge, 5_000, "UNC 42").id == first.id
        with pytest.raises(fundraising.FundraisingError, match="reference: already recorded for another amount"):
            fundraising.record_pledge_payment(pledge, 4_000, "UNC 42")
        with pytest.raises(fundraising.FundraisingError, match="reference: 1 to 100 characters"):
            fundraising.record_pledge_payment(pledge, 1, "x" * 101)
        assert fundraising.balance(fundraising.receivable_account(pledge), pledge.currency) == 0


def test_money_is_formatted_exactly_whatever_its_size(app):
    from kindstride.fundraising.receipts import money

    def digits(text):
        return "".join(ch for ch in text if ch.isdigit())

    with app.test_request_context():
        assert digits(money(2**53 + 1, "VND")) == "9007199254740993"  # a float would show ...992
        assert digits(money(10**17 + 3, "USD")) == "100000000000000003"  # and lose the 3 cents
