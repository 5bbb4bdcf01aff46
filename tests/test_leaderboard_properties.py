"""Property: whatever happens (imports, moderation, appeals, team switches, ruleset changes), every total
equals a from-scratch recomputation, and every team total equals its aggregation of members."""

import itertools
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindstride.accounts import services as accounts
from kindstride.activities import moderation
from kindstride.activities.evaluation import reevaluate_challenge, resolved_ruleset
from kindstride.activities.models import FLAGGED, REJECTED, ActivityResult
from kindstride.activities.services import add_entered
from kindstride.challenges import services as challenges
from kindstride.challenges.models import Registration
from kindstride.db import db
from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)
_tenant_numbers = itertools.count()

RUNNERS = 4
activity = st.tuples(
    st.just("activity"), st.integers(0, RUNNERS - 1),
    st.integers(1, 60),  # hours ago
    st.integers(500, 25000),  # metres
    st.sampled_from([200, 250, 300, 420, 900, 1000]),  # seconds per km
    st.booleans(),  # with splits
)
moderate = st.tuples(st.just("moderate"), st.integers(0, 50), st.sampled_from(["accepted", "rejected"]))
appeal = st.tuples(st.just("appeal"), st.integers(0, 50))
switch = st.tuples(st.just("switch"), st.integers(0, RUNNERS - 1), st.integers(0, 2))
change = st.tuples(st.just("ruleset"), st.integers(500, 6000), st.sampled_from(["sum", "average_per_member"]))
operations = st.lists(st.one_of(activity, activity, moderate, appeal, switch, change), min_size=1, max_size=18)


def _setup(app):
    slug = f"prop{next(_tenant_numbers)}"
    tenant = create_tenant(slug, "Property Club", "en", "USD", "Asia/Ho_Chi_Minh")
    with tenant_scope(tenant.id):
        people = []
        for index in range(RUNNERS + 1):
            user = accounts.sign_up(f"p{index}@{slug}.example", f"Runner {index}", "correct horse battery")
            people.append(user)
        accounts.grant_role(people[-1], "moderator")
        challenge = challenges.create_challenge({
            "slug": "prop", "title": "Property", "sports": ["run"], "timezone": "Asia/Ho_Chi_Minh",
            "registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
            "counting_start": (NOW - timedelta(days=4)).isoformat(),
            "counting_end": (NOW + timedelta(days=10)).isoformat(),
            "divisions": ["A"], "team_switch_policy": "free", "preset": "vn-charity-run-2024",
        })
        division = challenges.divisions_of(challenge)[0].id
        teams = [challenges.create_team(challenge, f"Team {n}", division) for n in range(3)]
        for index, user in enumerate(people[:RUNNERS]):
            challenges.register(challenge, user, {"team_id": teams[index % 3].id})
        db.session.commit()
        return tenant.id, challenge.id, people, teams


def _apply(app, tenant_id, challenge_id, people, teams, operation):
    kind = operation[0]
    challenge = db.session.get(challenges.Challenge, challenge_id)
    if kind == "activity":
        _kind, runner, hours_ago, metres, pace, with_splits = operation
        start = NOW - timedelta(hours=hours_ago)
        moving = metres / 1000 * pace
        splits = [pace] * (metres // 1000) if with_splits else []
        add_entered(people[runner], {"sport": "run", "start": start.isoformat(), "moving_s": moving,
                                     "distance_m": metres, "has_gps": True, "split_paces_s_per_km": splits},
                    source="api")
    elif kind == "moderate":
        queue = moderation.review_queue(challenge)
        if queue:
            result = queue[operation[1] % len(queue)][0]
            moderation.decide(result, operation[2], "checked", people[-1])
    elif kind == "appeal":
        rejected = db.session.scalars(sa.select(ActivityResult).where(
            ActivityResult.status == REJECTED, ActivityResult.appeal_state.is_(None))).all()
        if rejected:
            result = rejected[operation[1] % len(rejected)]
            owner = db.session.get(Registration, result.registration_id).user_id
            moderation.appeal(result, next(p for p in people if p.id == owner), "please look again")
    elif kind == "switch":
        _kind, runner, team = operation
        registration = challenges.registration_of(challenge, people[runner])
        challenges.switch_team(challenge, registration, people[runner], {"team_id": teams[team].id})
    elif kind == "ruleset":
        _kind, min_m, aggregation = operation
        ruleset = challenges.current_ruleset(challenge)
        for entry in ruleset["validation"]:
            if entry["rule"] == "distance_limits":
                entry["params"]["min_m"] = min_m
        ruleset["team_aggregation"] = {"rule": aggregation, "params": {}}
        challenges.change_ruleset(challenge, ruleset, "property test")
    db.session.commit()
    run_queued_jobs(app)


def _snapshot(challenge_id):
    participants = {row.registration_id: (row.score, row.distance_m, row.activities, row.reached_at, row.team_id)
                    for row in db.session.scalars(sa.select(ParticipantTotal)
                                                  .where(ParticipantTotal.challenge_id == challenge_id))}
    teams = {row.team_id: (row.score, row.distance_m, row.members)
             for row in db.session.scalars(sa.select(TeamTotal).where(TeamTotal.challenge_id == challenge_id))}
    return participants, teams


def _check_parts(challenge_id):
    """Totals are the sums of their parts, computed here independently of the leaderboard code."""
    challenge = db.session.get(challenges.Challenge, challenge_id)
    strategy, params = resolved_ruleset(challenge).team_aggregation
    participants, teams = _snapshot(challenge_id)
    for registration_id, (score, distance, _count, _reached, _team) in participants.items():
        results = db.session.scalars(sa.select(ActivityResult)
                                     .where(ActivityResult.registration_id == registration_id)).all()
        assert score == sum(r.score for r in results)
        assert distance == sum(r.counted_distance_m for r in results)
        assert all(r.score == 0 for r in results if r.status in (REJECTED, FLAGGED))
    for team_id, (score, distance, members) in teams.items():
        member_scores = [p[0] for p in participants.values() if p[4] == team_id]
        assert distance == sum(p[1] for p in participants.values() if p[4] == team_id)
        assert members == len(member_scores)
        assert score == (strategy.aggregate(member_scores, params) if member_scores else 0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(operations)
def test_totals_always_equal_a_recomputation(app, monkeypatch, operations):
    from kindstride.activities import evaluation

    monkeypatch.setattr(evaluation, "REEVALUATION_CHUNK", 2)  # a few people at a time, as at scale
    tenant_id, challenge_id, people, teams = _setup(app)
    with tenant_scope(tenant_id):
        for operation in operations:
            _apply(app, tenant_id, challenge_id, people, teams, operation)
        _check_parts(challenge_id)
        before = _snapshot(challenge_id)
        challenge = db.session.get(challenges.Challenge, challenge_id)
        reevaluate_challenge(challenge_id, challenge.ruleset_version)
        db.session.commit()
        assert _snapshot(challenge_id) == before
