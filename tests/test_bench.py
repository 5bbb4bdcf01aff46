"""The bench's code paths at a tiny size: the bulk import ends exactly where adding the same activities one by one
ends, and `kindstride bench --scale tiny` completes with every figure present (figures are never asserted)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kindstride.accounts.models import User
from kindstride.activities import moderation
from kindstride.activities import services as activity_services
from kindstride.activities.bulk import BulkImportError, import_activities
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
    """The generator's rows, plus two files uploaded again: how many of its own re-uploads survive its cut at
    `now` depends on the time of day the test runs."""
    rows = generate.activity_rows(event, count, seed=11)
    earliest = sorted(rows, key=lambda row: row.received_at)[:2]
    return rows + [row._replace(received_at=row.received_at + timedelta(seconds=1)) for row in earliest]


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


def _postgres_only():
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (set KINDSTRIDE_REQUIRE_SERVICES=1 to fail instead)")


@pytest.fixture
def inline_app(make_app):
    """Jobs in-process: each activity is evaluated as its transaction commits, as the per-activity path does."""
    app = make_app(REDIS_URL=None)
    with app.app_context():
        yield app


def test_bulk_import_ends_where_adding_one_by_one_ends(inline_app, monkeypatch):
    _postgres_only()  # the bench's event generator writes with PostgreSQL's SQL
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


def _decide_first_flagged(event):
    """A moderator accepts the first flagged activity (in the order received) of the challenge "top"; the index of
    its owner among the event's people."""
    with tenant_scope(event.tenant_id):
        challenge = db.session.scalar(sa.select(Challenge).where(Challenge.slug == "top"))
        result = db.session.scalar(sa.select(ActivityResult).where(ActivityResult.challenge_id == challenge.id,
                                                                   ActivityResult.status == FLAGGED)
                                   .order_by(ActivityResult.activity_id))
        owner = db.session.get(Activity, result.activity_id).user_id
        moderator = db.session.get(User, event.user_ids[0])
        moderation.decide(result, "accepted", "checked", moderator)
        db.session.commit()
    return event.user_ids.index(owner)


def test_bulk_import_in_batches_after_a_moderator_decision(inline_app, monkeypatch):
    """A second import lands on days the first one filled: overlaps flip, later same-day verdicts change,
    and a moderator's decision in between stands."""
    _postgres_only()
    one_by_one, bulk = _event("onebyone"), _event("bulk")
    rows = _received_order(_rows(one_by_one))
    # Not split by receipt: the second batch holds older runs too, received later.
    first, second = rows[::2], rows[1::2]
    _add_one_by_one(monkeypatch, one_by_one, first)
    import_activities(bulk.tenant_id, _moved(first, one_by_one, bulk))
    decided = _decide_first_flagged(one_by_one)
    assert _decide_first_flagged(bulk) == decided  # the same activity of the same person
    assert _state(bulk) == _state(one_by_one)
    # The second batch: half the people, never the one whose activity was decided (a recording that the second
    # batch turned into a duplicate would lose its decision, on both paths).
    busy = {one_by_one.user_ids.index(row.user_id) for row in second[: len(second) // 2]} - {decided}
    second = [row for row in second if one_by_one.user_ids.index(row.user_id) in busy]
    later = [row._replace(received_at=max(r.received_at for r in first) + (row.received_at - rows[0].received_at))
             for row in second]
    _add_one_by_one(monkeypatch, one_by_one, later)
    import_activities(bulk.tenant_id, _moved(later, one_by_one, bulk))
    expected = _state(one_by_one)
    assert any(result[-1] for result in expected[1])  # the decision is still there
    assert _state(bulk) == expected


# --------------------------------------------------------------------- what the bench's optimisations keep


def test_a_bulk_import_with_a_bad_row_names_it_and_stores_nothing(inline_app):
    _postgres_only()
    event = _event("badrows")
    rows = _rows(event, count=20)
    bad = [*rows[:3], rows[3]._replace(distance_m=float("inf")), rows[4]._replace(split_paces=(300.0, None)),
           rows[5]._replace(split_paces=(300.0, float("nan"))), rows[6]._replace(split_paces=(1e308, 1e308)),
           *rows[7:12], rows[12]._replace(sport="skydiving"), *rows[13:]]
    with pytest.raises(BulkImportError) as raised:
        import_activities(event.tenant_id, bad, workers=2)
    assert raised.value.errors == ["rows[3]: elapsed_s, moving_s and distance_m must be finite numbers",
                                   "rows[4].split_paces: finite numbers only",
                                   "rows[5].split_paces: finite numbers only",
                                   "rows[12].sport: must be one of run, walk, ride, hike, swim, wheelchair, other"]
    with tenant_scope(event.tenant_id):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0
    import_activities(event.tenant_id, rows, workers=2)  # the same import, mended
    with tenant_scope(event.tenant_id):
        stored = db.session.scalar(sa.select(sa.func.count()).select_from(Activity))
        assert stored == len({(row.user_id, row.fingerprint) for row in rows})


def test_row_level_security_follows_the_scope_within_one_transaction(app, tenants, make_user):
    """The setting is applied lazily, right before a statement: leaving a scope, or a savepoint rolled back
    (which undoes a setting made inside it), never leaves a statement running with another tenant's."""
    _postgres_only()
    make_user(tenants["alpha"], "ann@alpha.example")
    make_user(tenants["beta"], "bo@beta.example")
    make_user(tenants["beta"], "bea@beta.example")
    count = sa.text("select count(*) from users")
    with tenant_scope(tenants["alpha"]):
        assert db.session.execute(count).scalar() == 1
    assert db.session.execute(count).scalar() == 0  # same transaction, no scope: nothing visible
    with tenant_scope(tenants["alpha"]):
        assert db.session.execute(count).scalar() == 1
        savepoint = db.session.begin_nested()
        assert db.session.execute(count).scalar() == 1  # the savepoint begins with alpha's setting
        with tenant_scope(tenants["beta"]):
            assert db.session.execute(count).scalar() == 2
            savepoint.rollback()  # undoes the setting made inside it: beta's must be set again
            assert db.session.execute(count).scalar() == 2
        assert db.session.execute(count).scalar() == 1
    db.session.rollback()


def test_a_streamed_read_sees_its_tenants_rows(app, tenants, make_user):
    """A server-side cursor (yield_per: the leaderboard build reads 350,000 totals so) runs with the scope's
    setting, like any other statement: row-level security shows it its tenant's rows, and only those (plain SQL,
    so that no ORM filter could hide another tenant's)."""
    _postgres_only()
    make_user(tenants["alpha"], "ann@alpha.example")
    make_user(tenants["beta"], "bo@beta.example")
    make_user(tenants["beta"], "bea@beta.example")
    db.session.commit()  # the read below is the first statement of its transaction: the setting is made for it
    emails = sa.text("select email from users order by email").execution_options(yield_per=1)
    with tenant_scope(tenants["beta"]):
        streamed = [row.email for batch in db.session.execute(emails).partitions() for row in batch]
    assert streamed == ["bea@beta.example", "bo@beta.example"]
    db.session.rollback()


def _ranks(event):
    from kindstride.leaderboards import ranking
    from kindstride.leaderboards.services import _counted_rank

    with tenant_scope(event.tenant_id):
        challenge = db.session.get(Challenge, event.challenge_id)
        totals = db.session.scalars(sa.select(ParticipantTotal)
                                    .where(ParticipantTotal.challenge_id == event.challenge_id)).all()
        cached = {t.registration_id: ranking.cached_rank(event.tenant_id, t) for t in totals}
        counted = {t.registration_id: _counted_rank(challenge, t) for t in totals}
        db.session.commit()
    return cached, counted


def test_the_leaderboard_cache_stays_exact(app, monkeypatch):
    """Cached ranks equal ranks counted in SQL after a bulk import, after activities evaluated by workers, after
    a push lost between commit and Redis (a crash), after a late push of an older version, and after Redis
    forgets everything."""
    _postgres_only()
    if not app.config["REDIS_URL"]:
        pytest.skip("the leaderboard cache lives in Redis")
    from kindstride.jobs.queue import redis_connection
    from kindstride.leaderboards import ranking
    from tests.support.jobs import run_queued_jobs

    event = generate.create_event("ranks", 40, 4, NOW, seed=3)
    other = generate.create_event("others", 10, 1, NOW, seed=4)
    rows = generate.activity_rows(event, 160, seed=5)
    import_activities(event.tenant_id, rows[:100])
    cached, counted = _ranks(event)
    assert None not in cached.values() and cached == counted
    assert all(f":t{event.tenant_id}:" in key for key in ranking.keys(event.tenant_id, event.challenge_id).values())

    _add_one_by_one(monkeypatch, event, _received_order(rows[100:130]))
    run_queued_jobs(app)
    cached, counted = _ranks(event)
    assert cached == counted and len(set(counted.values())) == len(counted)

    # A crash after the commit: the changes stay marked pending, and readers repair them from the database.
    monkeypatch.setattr(ranking, "_send", lambda marks, pushes: None)
    _add_one_by_one(monkeypatch, event, _received_order(rows[130:]))
    monkeypatch.setattr(ranking, "_send", lambda marks, pushes: None)
    run_queued_jobs(app)
    monkeypatch.undo()
    names = ranking.keys(event.tenant_id, event.challenge_id)
    assert redis_connection().hlen(names["pending"]) > 0
    cached, counted = _ranks(event)
    assert cached == counted

    # An older version pushed late changes nothing.
    with tenant_scope(event.tenant_id):
        top = db.session.scalar(sa.select(ParticipantTotal).where(ParticipantTotal.challenge_id == event.challenge_id)
                                .order_by(ParticipantTotal.score.desc()))
        top_id, stale = top.registration_id, ranking.member(top.registration_id, 0, None, top.bib)
        db.session.rollback()
    redis_connection().register_script(ranking._APPLY)(
        keys=[names["board"], names["members"], names["versions"]], args=[top_id, 0, stale])
    cached, counted = _ranks(event)
    assert cached == counted and counted[top_id] == 1

    # Another tenant's board is its own; and a Redis that lost everything is rebuilt by the next reader.
    import_activities(other.tenant_id, generate.activity_rows(other, 30, seed=6))
    assert _ranks(other)[0] == _ranks(other)[1]
    redis_connection().flushdb()
    cached, counted = _ranks(event)
    assert None not in cached.values() and cached == counted


def test_a_build_batch_applies_exactly_what_one_by_one_pushes_apply(app):
    """The build's batched script keeps, per registration, the newest version it was sent, as _APPLY does one
    member at a time: entries pushed while the build ran (newer or older than what it read) end the same."""
    if not app.config["REDIS_URL"]:
        pytest.skip("the leaderboard cache lives in Redis")
    import random

    from kindstride.jobs.queue import redis_connection
    from kindstride.leaderboards import ranking

    redis, rnd = redis_connection(), random.Random(5)
    apply, build_apply = redis.register_script(ranking._APPLY), redis.register_script(ranking._BUILD_APPLY)
    for attempt in range(20):
        one, batched = ranking.keys(900, attempt), ranking.keys(901, attempt)
        for registration in range(30):  # what was pushed before the batch arrives
            if rnd.random() < 0.5:
                args = [registration, rnd.randrange(4), ranking.member(registration, rnd.randrange(50), None, 1)]
                for names in (one, batched):
                    apply(keys=[names["board"], names["members"], names["versions"]], args=args)
        batch = [(registration, rnd.randrange(4), ranking.member(registration, rnd.randrange(50), NOW, 2))
                 for registration in rnd.sample(range(40), 25)]
        apply(keys=[one["board"], one["members"], one["versions"]], args=[v for entry in batch for v in entry])
        build_apply(keys=[batched["board"], batched["members"], batched["versions"]],
                    args=["".join(f"{version} {member}\n" for _registration, version, member in batch)])
        for key in ("members", "versions"):
            assert redis.hgetall(one[key]) == redis.hgetall(batched[key])
        assert redis.zrange(one["board"], 0, -1) == redis.zrange(batched["board"], 0, -1)
        redis.delete(*one.values(), *batched.values())


def test_bench_tiny_completes_with_every_figure(tmp_path):
    """`kindstride bench --scale tiny`: the whole run (servers, load, scenarios) ends with every figure present
    and every total equal to its recomputation. Timings are printed by the bench, never asserted here."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.support.services import find_postgres, missing

    postgres = find_postgres(os.environ.get("KINDSTRIDE_TEST_DATABASE_URL"))
    if postgres is None or shutil.which("redis-server") is None:
        missing("the bench needs PostgreSQL and a redis-server it can start")
    out = tmp_path / "tiny.json"
    run = subprocess.run([sys.executable, "-m", "kindstride.cli", "bench", "--scale", "tiny", "--json", str(out)],
                         env={**os.environ, "KINDSTRIDE_BENCH_DATABASE_URL": postgres}, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert "1 import" in run.stdout and "5 memory" in run.stdout
    assert [step["activities"] for step in figures["steps"]] and all(
        step[key] is not None for step in figures["steps"]
        for key in ("import_rows_per_s", "copy_rows_per_s", "import_ratio", "board_rps", "board_p50_ms",
                    "board_p99_ms", "me_rps", "me_p99_ms", "constant_rps", "constant_p99_ms", "groupby_ms",
                    "groupby_factor", "board_ratio_rps"))
    assert all(step["import_cpu_s"]["workers"] is not None and step["import_cpu_s"]["rest"] is not None
               for step in figures["steps"])
    assert "CPU s: parent / workers / PostgreSQL+rest" in run.stdout
    for key in ("ingest_rps", "ingest_evaluated_per_s", "web_worker_peak_rss_mb", "rq_worker_peak_rss_mb"):
        assert figures[key], key
    assert figures["ingest_accepted"] > 0 and figures["ingest_drained"]
    assert figures["verify_participant_mismatches"] == 0 and figures["verify_team_mismatches"] == 0
    assert figures["verify_rejudged_results"] > 0 and figures["verify_result_mismatches"] == 0
    assert figures["ingest_failed_jobs"] == 0


def test_the_cpu_clock_counts_a_forked_workers_cpu_as_the_workers():
    """The import's CPU split: what a forked child burns (once reaped) is the workers', not the parent's."""
    import os

    from kindstride.bench.servers import CpuClock

    clock = CpuClock()
    pid = os.fork()
    if pid == 0:
        while sum(os.times()[:2]) < 0.3:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    cpu = clock.split()
    assert cpu["workers"] >= 0.3 > cpu["parent"]
    assert cpu["rest"] is not None and cpu["cores_busy"] > 0
