"""The bench's code paths at a tiny size: the bulk import ends exactly where adding the same activities one by one
ends, and `kindstride bench --scale tiny` completes with every figure present (figures are never asserted)."""

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from kindstride.accounts.models import User
from kindstride.activities import moderation
from kindstride.activities import services as activity_services
from kindstride.activities.bulk import import_activities
from kindstride.activities.models import FLAGGED, Activity, ActivityResult
from kindstride.activities.services import add_activity
from kindstride.bench import generate
from kindstride.challenges import services as challenges
from kindstride.challenges.models import Challenge, Registration, Team
from kindstride.db import db
from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
from kindstride.tenancy.scope import tenant_scope

NOW = datetime.now(UTC).replace(microsecond=0)
PEOPLE = 24


def _ruleset(validation, aggregation):
    return {"validation": validation, "scoring": {"rule": "distance", "params": {}}, "multipliers": [],
            "team_aggregation": aggregation}


def _event(slug):
    """The bench's generated event, plus two challenges that exercise daily limits and other team rules."""
    event = generate.create_event(slug, PEOPLE, 3, NOW, seed=7)
    with tenant_scope(event.tenant_id):
        windows = {"registration_opens_at": (event.counting_start.replace(year=event.counting_start.year - 1))
                   .isoformat(), "registration_closes_at": event.counting_end.isoformat(),
                   "counting_start": event.counting_start.isoformat(), "counting_end": event.counting_end.isoformat()}
        daily = challenges.create_challenge({
            "slug": "daily", "title": "Daily", "sports": ["run"], "timezone": generate.TIMEZONE, **windows,
            "ruleset": _ruleset([{"rule": "counting_window", "params": {}},
                                 {"rule": "daily_limits", "params": {"max_activities": 1, "max_distance_m": 9000}}],
                                {"rule": "average_per_member", "params": {}})})
        top = challenges.create_challenge({
            "slug": "top", "title": "Top", "sports": ["run"], "timezone": "UTC", **windows,
            "ruleset": _ruleset([{"rule": "no_manual_entries", "params": {"outcome": "flag"}}],
                                {"rule": "top_n_sum", "params": {"n": 2}})})
        daily_teams = [challenges.create_team(daily, f"D{n}", None) for n in range(2)]
        top_team = challenges.create_team(top, "T", None)
        for index, user_id in enumerate(event.user_ids):
            user = db.session.get(User, user_id)
            challenges.register(daily, user, {"team_id": daily_teams[index % 2].id}, now=NOW)
            if index % 3:
                challenges.register(top, user, {"team_id": top_team.id if index % 2 else None}, now=NOW)
        db.session.commit()
    return event


def _rows(event, count=260):
    return generate.activity_rows(event, count, seed=11)


def _moved(rows, source, target):
    index = {user_id: n for n, user_id in enumerate(source.user_ids)}
    return [row._replace(user_id=target.user_ids[index[row.user_id]]) for row in rows]


def _received_order(rows):
    return [rows[i] for i in sorted(range(len(rows)), key=lambda i: (rows[i].received_at, i))]


def _add_one_by_one(monkeypatch, event, rows):
    """The per-activity path: add_activity as each arrives (at its receipt time), evaluation jobs in-process."""
    with tenant_scope(event.tenant_id):
        for row in rows:
            monkeypatch.setattr(activity_services, "utcnow", lambda row=row: row.received_at)
            fields = row._asdict()
            del fields["user_id"], fields["received_at"]
            fields["split_paces"] = list(fields["split_paces"])
            add_activity(db.session.get(User, row.user_id), **fields)
            db.session.commit()
    monkeypatch.undo()


def _state(event):
    """Everything the import decides, keyed by what is the same in two tenants (bib, fingerprint, names)."""
    with tenant_scope(event.tenant_id):
        bib = dict(db.session.execute(sa.select(Registration.user_id, Registration.bib)
                                      .where(Registration.challenge_id == event.challenge_id)).all())
        activities = db.session.scalars(sa.select(Activity)).all()
        fingerprint = {a.id: (bib[a.user_id], a.fingerprint) for a in activities}
        stored = sorted((fingerprint[a.id], fingerprint.get(a.duplicate_of_id)) for a in activities)
        slug = dict(db.session.execute(sa.select(Challenge.id, Challenge.slug)).all())
        results = []
        for r in db.session.scalars(sa.select(ActivityResult)):
            reasons = json.loads(json.dumps(r.reasons))
            for reason in reasons:
                if "of" in reason["params"]:
                    reason["params"]["of"] = fingerprint[reason["params"]["of"]]
            results.append((slug[r.challenge_id], fingerprint[r.activity_id], r.status, json.dumps(reasons),
                            r.score, r.counted_distance_m, r.local_day, r.counted_at, r.ruleset_version,
                            r.decided_by_id is not None))
        team = dict(db.session.execute(sa.select(Team.id, Team.name)).all())
        participants = sorted((slug[t.challenge_id], t.bib, t.score, t.distance_m, t.activities, t.reached_at,
                               team.get(t.team_id)) for t in db.session.scalars(sa.select(ParticipantTotal)))
        teams = sorted((team[t.team_id], t.members, t.score, t.distance_m, t.reached_at)
                       for t in db.session.scalars(sa.select(TeamTotal)))
        return stored, sorted(results), participants, teams


@pytest.fixture
def inline_app(make_app):
    """Jobs in-process: each activity is evaluated as its transaction commits, as the per-activity path does."""
    app = make_app(REDIS_URL=None)
    with app.app_context():
        yield app


def test_bulk_import_ends_where_adding_one_by_one_ends(inline_app, monkeypatch):
    one_by_one, bulk = _event("onebyone"), _event("bulk")
    rows = _rows(one_by_one)
    _add_one_by_one(monkeypatch, one_by_one, _received_order(rows))
    workers = 2 if db.engine.dialect.name == "postgresql" else 1
    summary = import_activities(bulk.tenant_id, _moved(rows, one_by_one, bulk), workers=workers)
    expected = _state(one_by_one)
    assert summary.received == len(rows) and summary.stored == len(expected[0])
    assert summary.already_stored > 0 and summary.duplicates > 0
    statuses = {result[2] for result in expected[1]}
    assert {"accepted", "rejected", "flagged", "duplicate"} <= statuses
    assert any("daily_activity_limit" in result[3] for result in expected[1])
    assert _state(bulk) == expected


def _decide_first_flagged(event, busy_people):
    """A moderator accepts the first flagged activity of someone the second batch leaves alone (a recording
    that the second batch turns into a duplicate loses its decision, on both paths)."""
    with tenant_scope(event.tenant_id):
        challenge = db.session.scalar(sa.select(Challenge).where(Challenge.slug == "top"))
        busy = [event.user_ids[index] for index in busy_people]
        result = db.session.scalar(sa.select(ActivityResult).join(Activity, Activity.id == ActivityResult.activity_id)
                                   .where(ActivityResult.challenge_id == challenge.id,
                                          ActivityResult.status == FLAGGED, Activity.user_id.not_in(busy))
                                   .order_by(ActivityResult.activity_id))
        moderator = db.session.get(User, event.user_ids[0])
        moderation.decide(result, "accepted", "checked", moderator)
        db.session.commit()


def test_bulk_import_in_batches_after_a_moderator_decision(inline_app, monkeypatch):
    """A second import lands on days the first one filled: overlaps flip, later same-day verdicts change,
    and a moderator's decision in between stands."""
    one_by_one, bulk = _event("onebyone"), _event("bulk")
    rows = _received_order(_rows(one_by_one))
    # Not split by receipt: the second batch holds older runs too, received later.
    first, second = rows[::2], rows[1::2]
    busy = {one_by_one.user_ids.index(row.user_id) for row in second[: len(second) // 2]}
    second = [row for row in second if one_by_one.user_ids.index(row.user_id) in busy]
    _add_one_by_one(monkeypatch, one_by_one, first)
    import_activities(bulk.tenant_id, _moved(first, one_by_one, bulk))
    _decide_first_flagged(one_by_one, busy)
    _decide_first_flagged(bulk, busy)
    assert _state(bulk) == _state(one_by_one)
    later = [row._replace(received_at=max(r.received_at for r in first) + (row.received_at - rows[0].received_at))
             for row in second]
    _add_one_by_one(monkeypatch, one_by_one, later)
    import_activities(bulk.tenant_id, _moved(later, one_by_one, bulk))
    expected = _state(one_by_one)
    assert any(result[-1] for result in expected[1])  # the decision is still there
    assert _state(bulk) == expected
