"""The caches on the request path (tenant by host, API tokens, leaderboard pages and "my rank") and batched
evaluation: what a user sees never lags behind a revocation, a suspension or a new activity, and no cache
answers one tenant with another's data."""

import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.challenges.models import Team
from kindstride.db import db
from kindstride.leaderboards import services as boards
from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
from kindstride.tenancy import services as tenancy
from kindstride.tenancy.models import SUSPENDED
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)
BOARD = "/api/v1/challenges/run/leaderboard"
ME = "/api/v1/challenges/run/leaderboard/me"


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _event(tenant_id, runners=3, prefix="r"):
    """A challenge "run" with `runners` registered people in two teams; returns their API tokens."""
    with tenant_scope(tenant_id):
        challenge = challenges.create_challenge({
            "slug": "run", "title": "Run", "sports": ["run"], "timezone": "UTC",
            "registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
            "counting_start": (NOW - timedelta(days=4)).isoformat(),
            "counting_end": (NOW + timedelta(days=10)).isoformat(),
            "divisions": ["A"], "preset": "vn-charity-run-2024",
        })
        division = challenges.divisions_of(challenge)[0].id
        teams = [challenges.create_team(challenge, f"Team {n}", division) for n in range(2)]
        tokens = []
        for index in range(runners):
            user = accounts.sign_up(f"{prefix}{index}@example.com", f"Runner {prefix}{index}",
                                    "correct horse battery")
            challenges.register(challenge, user, {"team_id": teams[index % 2].id})
            _record, token = accounts.create_api_token(user, "test", ["read", "activities:write"], 30)
            tokens.append(token)
        db.session.commit()
        return tokens


def _run(client, token, hours_ago, km, pace=360):
    start = NOW - timedelta(hours=hours_ago)
    moving = km * pace
    response = client.post("/api/v1/activities", headers=_bearer(token), json={
        "sport": "run", "start": start.isoformat(), "moving_s": moving, "elapsed_s": moving + 20,
        "distance_m": km * 1000, "has_gps": True, "title": "run", "split_paces_s_per_km": [pace] * int(km)})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json


class _Statements:
    """Counts the SQL statements run while it is active."""

    def __init__(self):
        self.count = 0

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._count)

    def _count(self, *args):
        self.count += 1


def test_a_revoked_token_a_removed_role_and_a_disabled_account_stop_working_at_once(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "ann@example.com", roles=("participant", "moderator"))
    with tenant_scope(tenants["alpha"]):
        user = db.session.get(User, user_id)
        token_record, token = accounts.create_api_token(user, "cli", ["read", "moderate"], 30)
        _other, other_token = accounts.create_api_token(user, "other", ["read"], 30)
        db.session.commit()
        token_id = token_record.id
    client = app.test_client().on("alpha")
    for _ in range(2):  # the second use is answered from the cache
        assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    with _Statements() as statements:
        assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    assert statements.count == 0, "a known token on a known site is checked without a query"
    # A moderator's token works on a moderation endpoint until the role goes.
    assert client.get("/api/v1/challenges/run/review-queue", headers=_bearer(token)).status_code != 403
    with tenant_scope(tenants["alpha"]):
        accounts.revoke_role(db.session.get(User, user_id), "moderator")
        db.session.commit()
    assert client.get("/api/v1/challenges/run/review-queue", headers=_bearer(token)).status_code == 403
    with tenant_scope(tenants["alpha"]):
        accounts.revoke_api_token(db.session.get(User, user_id), token_id)
        db.session.commit()
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401
    assert client.get("/api/v1/me", headers=_bearer(other_token)).status_code == 200
    with tenant_scope(tenants["alpha"]):
        db.session.get(User, user_id).is_disabled = True
        db.session.commit()
    assert client.get("/api/v1/me", headers=_bearer(other_token)).status_code == 401


def test_a_revocation_in_another_process_is_seen_through_the_redis_generation(app, tenants, make_user):
    if not app.config["REDIS_URL"]:
        import pytest

        pytest.skip("needs Redis: without it other processes see a revocation within API_TOKEN_CACHE_SECONDS")
    from kindstride.api import auth

    user_id = make_user(tenants["alpha"], "ann@example.com")
    with tenant_scope(tenants["alpha"]):
        record, token = accounts.create_api_token(db.session.get(User, user_id), "cli", ["read"], 30)
        db.session.commit()
        token_id = record.id
    client = app.test_client().on("alpha")
    for _ in range(2):
        assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    assert auth._cache, "the token is cached"
    # Another process revokes it: the row changes behind this process's back, and only the generation tells.
    cached, local = dict(auth._cache), auth._local_generation
    with tenant_scope(tenants["alpha"]):
        accounts.revoke_api_token(db.session.get(User, user_id), token_id)
        db.session.commit()
    auth._cache.update(cached)  # as if this process had not seen the commit
    auth._local_generation = local
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401


def test_a_suspended_tenant_stops_being_served_at_once_and_elsewhere_within_the_cache_time(make_app, backend):
    app = make_app(TENANT_CACHE_SECONDS=0.3)
    with app.app_context():
        tenancy.create_tenant("alpha", "Alpha Corp", "en", "USD", "UTC")
        client = app.test_client().on("alpha")
        assert client.get("/api/v1/challenges").status_code == 200
        tenancy.set_status("alpha", SUSPENDED)
        assert client.get("/api/v1/challenges").status_code == 503
        tenancy.set_status("alpha", "active")
        assert client.get("/api/v1/challenges").status_code == 200
        # Suspended by another process (plain SQL, no hook in this one): seen once the cache time has passed.
        owner = sa.create_engine(backend["MIGRATE_DATABASE_URL"], poolclass=sa.pool.NullPool)
        with owner.begin() as connection:
            connection.execute(sa.text("UPDATE tenants SET status = 'suspended' WHERE slug = 'alpha'"))
        owner.dispose()
        deadline = time.monotonic() + 10  # polled: seen once the 0.3 s cache time has passed, whenever that is
        while client.get("/api/v1/challenges").status_code != 503:
            assert time.monotonic() < deadline, "the suspension was never seen"


def test_rank_and_board_are_right_right_after_a_new_activity(app, tenants):
    tokens = _event(tenants["alpha"])
    client = app.test_client().on("alpha")
    _run(client, tokens[0], 30, 10)
    _run(client, tokens[1], 29, 5)
    _run(client, tokens[2], 28, 3)
    run_queued_jobs(app)
    for _ in range(3):  # computed, then stored, then served from the cache
        first = [(row["name"], row["rank"]) for row in client.get(BOARD).json]
        assert first == [("Runner r0", 1), ("Runner r1", 2), ("Runner r2", 3)]
        mine = client.get(ME, headers=_bearer(tokens[2])).json
        assert mine["rank"] == 3 and mine["bib"] == 3
    # The last runner runs far: first at once, on the board and in "my rank".
    _run(client, tokens[2], 20, 15)
    run_queued_jobs(app)
    board = client.get(BOARD).json
    assert [(row["name"], row["rank"]) for row in board] == [("Runner r2", 1), ("Runner r0", 2), ("Runner r1", 3)]
    mine = client.get(ME, headers=_bearer(tokens[2])).json
    with tenant_scope(tenants["alpha"]):
        total = db.session.scalar(sa.select(ParticipantTotal).where(ParticipantTotal.bib == 3))
        challenge = challenges.get_challenge("run")
        assert mine == {"rank": 1, "bib": 3, "score": total.score} and total.score == board[0]["score"]
        assert boards._counted_rank(challenge, total) == 1
    # A renamed team shows on the cached page at once.
    with tenant_scope(tenants["alpha"]):
        team = db.session.get(Team, total.team_id)
        team.name = "Renamed"
        db.session.commit()
    assert client.get(BOARD).json[0]["team"] == "Renamed"


def test_caches_never_answer_one_tenant_with_anothers_data(app, tenants):
    alpha_tokens = _event(tenants["alpha"], runners=2, prefix="a")
    beta_tokens = _event(tenants["beta"], runners=3, prefix="b")
    alpha, beta = app.test_client().on("alpha"), app.test_client().on("beta")
    _run(alpha, alpha_tokens[1], 30, 8)
    _run(beta, beta_tokens[0], 30, 4)
    run_queued_jobs(app)
    for _ in range(2):  # the second round comes from the caches
        assert [row["name"] for row in alpha.get(BOARD).json] == ["Runner a1", "Runner a0"]
        assert [row["name"] for row in beta.get(BOARD).json] == ["Runner b0", "Runner b1", "Runner b2"]
        assert alpha.get(ME, headers=_bearer(alpha_tokens[1])).json["rank"] == 1
        assert beta.get(ME, headers=_bearer(beta_tokens[1])).json["rank"] == 2
        # A token is only ever a token on its own tenant's site, cached or not.
        assert beta.get(ME, headers=_bearer(alpha_tokens[1])).status_code == 401
        assert alpha.get(ME, headers=_bearer(beta_tokens[0])).status_code == 401


def test_queued_evaluations_run_in_batches_and_totals_stay_exact(app, tenants):
    tokens = _event(tenants["alpha"], runners=4)
    client = app.test_client().on("alpha")
    for hour in range(6):
        for index, token in enumerate(tokens):
            _run(client, token, 60 - hour * 5 - index * 0.2, 2 + index, pace=300 + 20 * index)
    if app.config["REDIS_URL"]:
        from rq import Queue

        from kindstride.jobs.queue import redis_connection

        # 24 activities, one job to judge them all.
        assert Queue("default", connection=redis_connection()).count == 1
    run_queued_jobs(app)
    with tenant_scope(tenants["alpha"]):
        from kindstride.activities.models import ActivityResult

        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult)) == 24
        for total in db.session.scalars(sa.select(ParticipantTotal)):
            expected = db.session.execute(
                sa.select(sa.func.coalesce(sa.func.sum(ActivityResult.score), 0),
                          sa.func.count(ActivityResult.counted_at))
                .where(ActivityResult.registration_id == total.registration_id)).one()
            assert (total.score, total.activities) == tuple(expected) and total.score > 0
        for team_total in db.session.scalars(sa.select(TeamTotal)):
            members = db.session.scalars(sa.select(ParticipantTotal.score)
                                         .where(ParticipantTotal.team_id == team_total.team_id)).all()
            assert team_total.members == len(members) and team_total.score == sum(members)


def _without_request_id(response):
    return sorted((name, value) for name, value in response.headers.items() if name != "X-Request-ID")


def test_hot_reads_answer_from_the_caches_exactly_as_the_views_do(app, tenants):
    from flask import request_started

    tokens = _event(tenants["alpha"])
    client = app.test_client().on("alpha")
    _run(client, tokens[1], 30, 6)
    run_queued_jobs(app)
    through_flask = []
    request_started.connect(lambda sender, **extra: through_flask.append(1), app, weak=False)
    for path, headers in ((BOARD, {}), (f"{BOARD}?page=1", {}), (ME, _bearer(tokens[1])), (ME, _bearer(tokens[2]))):
        answers = [client.get(path, headers=headers) for _ in range(3)]  # computed, stored, then from the caches
        before = len(through_flask)
        hot = client.get(path, headers=headers)
        if app.config["REDIS_URL"]:
            assert len(through_flask) == before, f"{path} was answered by Flask"
        assert hot.status_code == 200 and hot.get_data() == answers[1].get_data()
        assert _without_request_id(hot) == _without_request_id(answers[1])
    assert client.get(ME, headers=_bearer(tokens[1])).json == {"rank": 1, "bib": 2,
                                                                 "score": client.get(BOARD).json[0]["score"]}
    # What the caches cannot vouch for goes to Flask: no token, a bad one, a search, a suspended site.
    assert client.get(ME).status_code == 401
    assert client.get(ME, headers=_bearer("ks_not-a-token")).status_code == 401
    assert client.get(f"{BOARD}?q=Runner r1").json[0]["name"] == "Runner r1"
    if app.config["REDIS_URL"]:
        # Revoked by another process (this one keeps its cache): the hot path must not vouch for the token.
        from kindstride.accounts.models import ApiToken
        from kindstride.api import auth

        cached, local = dict(auth._cache), auth._local_generation
        with tenant_scope(tenants["alpha"]):
            for record in db.session.scalars(sa.select(ApiToken)):
                record.revoked_at = NOW
            db.session.commit()
        auth._cache.update(cached)
        auth._local_generation = local
        assert client.get(ME, headers=_bearer(tokens[1])).status_code == 401
    tenancy.set_status("alpha", SUSPENDED)
    assert client.get(BOARD).status_code == 503
    assert client.get(ME, headers=_bearer(tokens[1])).status_code == 503


def _wait_until_blocked(locktype, thread, failure):
    """Until some transaction waits for a lock of this type (the thread's, which must still be running)."""
    deadline = time.monotonic() + 30
    while not db.session.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = :type AND NOT granted"),
                                 {"type": locktype}).scalar():
        db.session.rollback()
        assert time.monotonic() < deadline and thread.is_alive(), failure
    db.session.rollback()


def test_a_batch_judges_an_activity_as_stored_once_it_holds_the_owners_lock(app, tenants):
    """A request may make an activity a duplicate while a batch waits for its owner: the batch must judge what
    is stored when it gets the lock, or its stale verdict lands after the newer batch's correct one."""
    import threading

    from kindstride.activities.evaluation import EVALUATION_LOCK, evaluate_activities
    from kindstride.activities.models import DUPLICATE, Activity, ActivityResult

    if db.engine.dialect.name != "postgresql":
        pytest.skip("batches wait for each other on PostgreSQL advisory locks")
    token = _event(tenants["alpha"], runners=1)[0]
    client = app.test_client().on("alpha")
    first, second = _run(client, token, 30, 5)["id"], _run(client, token, 20, 5)["id"]
    run_queued_jobs(app)
    with tenant_scope(tenants["alpha"]):
        owner = db.session.get(Activity, first).user_id
        db.session.rollback()
    with db.engine.connect() as holder:  # another batch, judging this person
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:kind, :person)"),
                       {"kind": EVALUATION_LOCK, "person": owner})
        errors = []

        def batch():
            with app.app_context(), tenant_scope(tenants["alpha"]):
                try:
                    evaluate_activities([[first]])
                    db.session.commit()
                except Exception as error:  # noqa: BLE001 (reported by the test below)
                    errors.append(error)

        waiting = threading.Thread(target=batch)
        waiting.start()
        _wait_until_blocked("advisory", waiting, f"the batch never waited: {errors}")
        with tenant_scope(tenants["alpha"]):
            db.session.execute(sa.update(Activity).where(Activity.id == first).values(duplicate_of_id=second))
            db.session.commit()
        holder.commit()  # the other batch ends
        waiting.join(30)
    assert not errors and not waiting.is_alive()
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(ActivityResult.status).where(ActivityResult.activity_id == first)) \
            == DUPLICATE


def test_a_sign_up_keeps_the_token_caches_and_a_huge_team_id_is_refused(app, tenants):
    from kindstride.api.auth import _generation

    _event(tenants["alpha"], runners=1)
    client = app.test_client().on("alpha")
    huge = client.get("/api/v1/challenges/run/leaderboard", query_string={"team_id": 10**20})
    assert huge.status_code == 422 and "team_id" in huge.get_data(as_text=True)
    if not app.config["REDIS_URL"]:
        return  # the generation lives in Redis
    with tenant_scope(tenants["alpha"]):
        before = _generation(tenants["alpha"])
        newcomer = accounts.sign_up("newcomer@example.com", "Newcomer", "correct horse battery")
        db.session.commit()
        assert _generation(tenants["alpha"]) == before  # nobody's token changed
        newcomer.is_disabled = True
        db.session.commit()
        assert _generation(tenants["alpha"]) != before


def test_a_tokens_last_use_is_recorded_at_most_once_a_minute_on_reads_and_writes(app, tenants):
    from kindstride.accounts.models import ApiToken
    from kindstride.accounts.tokens import hash_token

    tokens = _event(tenants["alpha"])
    client = app.test_client().on("alpha")

    def last_used(token):
        with tenant_scope(tenants["alpha"]):
            value = db.session.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.token_hash == hash_token(token)))
            db.session.rollback()
            return value

    assert last_used(tokens[0]) is None and last_used(tokens[1]) is None
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert client.get(ME, headers=_bearer(tokens[0])).status_code == 200  # a read: committed on its own
    first = last_used(tokens[0])
    assert first is not None and first >= before
    assert client.get(ME, headers=_bearer(tokens[0])).status_code == 200
    assert last_used(tokens[0]) == first  # within the minute: not written again
    _run(client, tokens[1], 5, 3)  # a write: recorded with the activity
    assert last_used(tokens[1]) is not None and last_used(tokens[1]) >= before


def test_the_same_activity_posted_twice_at_once_is_stored_once(app, tenants):
    """Two requests with one activity (say, a retry after a timeout): the second, which could not yet see the
    first's uncommitted row, waits at the insert and then answers with the stored activity instead of failing."""
    import threading

    from kindstride.activities.models import Activity
    from kindstride.tenancy.scope import RLS_SETTING

    if db.engine.dialect.name != "postgresql":
        pytest.skip("a concurrent insert waits on PostgreSQL's unique index")
    token = _event(tenants["alpha"], runners=1)[0]
    client = app.test_client().on("alpha")
    start = NOW - timedelta(hours=3)
    body = {"sport": "run", "start": start.isoformat(), "moving_s": 1500, "elapsed_s": 1520, "distance_m": 5000,
            "external_id": "watch-sync-42"}
    with tenant_scope(tenants["alpha"]):
        user_id = db.session.scalar(sa.select(User.id).where(User.email == "r0@example.com"))
        db.session.rollback()
    fingerprint = hashlib.sha256(b"api|watch-sync-42").hexdigest()
    with db.engine.connect() as first:  # the first request, its transaction still open
        first.execute(sa.text("SELECT set_config(:name, :tenant, true)"),
                      {"name": RLS_SETTING, "tenant": str(tenants["alpha"])})
        first_id = first.execute(sa.insert(Activity.__table__).returning(Activity.__table__.c.id), {
            "tenant_id": tenants["alpha"], "user_id": user_id, "source": "api", "sport": "run", "start": start,
            "elapsed_s": 1520.0, "moving_s": 1500.0, "distance_m": 5000.0, "fingerprint": fingerprint,
            "external_id": "watch-sync-42", "received_at": NOW}).scalar()
        answers = []
        second = threading.Thread(target=lambda: answers.append(
            client.post("/api/v1/activities", headers=_bearer(token), json=body)))
        second.start()
        _wait_until_blocked("transactionid", second, f"the second never waited: {answers}")
        first.commit()
        second.join(30)
    assert not second.is_alive() and answers[0].status_code == 201, answers[0].get_data(as_text=True)
    assert answers[0].json["id"] == first_id
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)
                                 .where(Activity.fingerprint == fingerprint)) == 1
