"""Fault injection with the real services: PostgreSQL (row-level security on), Redis, rq workers, VNPay's fake.

- An rq worker is killed (SIGKILL, work horse and all) in the middle of a long re-evaluation; rq's registry
  cleanup hands the abandoned job back, a new worker runs it, and every total equals a recomputation.
- Redis stops in the middle of a run (a Redis of the test's own, not the machine's): pages still answer, work
  that needed a queue is not lost, and once Redis is back everything flows through it again.
- The app's PostgreSQL connection is killed in the middle of a request (pg_terminate_backend): that request
  fails cleanly, the next one works; connections killed between requests are replaced unseen.
- A gateway notification is delivered ten times, out of order, and concurrently: the money is counted once.
- A notification arrives while the database refuses connections: we answer non-2xx, so the gateway retries,
  and the retry after recovery credits once.
Afterwards the ledger balances (`problems() == []`) and every total equals a recomputation.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from kindstride.accounts import services as accounts
from kindstride.activities.models import Activity, ActivityResult
from kindstride.challenges import services as challenges
from kindstride.db import db
from kindstride.ledger.models import LedgerTransaction
from kindstride.ledger.services import problems
from kindstride.payments.models import Payment, WebhookDelivery
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant
from tests.conftest import BASE_DOMAIN
from tests.support.fake_vnpay import start_fake_vnpay
from tests.support.jobs import run_queued_jobs
from tests.support.services import missing
from tests.support.sweep import NOW, PLUGINS, populate, totals_problems

REPO = Path(__file__).resolve().parents[1]
KINDSTRIDE = str(Path(sys.executable).with_name("kindstride"))


@pytest.fixture
def services(backend):
    if not backend["DATABASE_URL"].startswith("postgresql") or not backend["REDIS_URL"]:
        pytest.skip("fault injection needs PostgreSQL and Redis")
    return backend


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _owner_engine(backend):
    return sa.create_engine(backend["MIGRATE_DATABASE_URL"], isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _another_transaction_open():
    """Whether another connection of this database is inside a transaction (a job at work)."""
    try:
        return bool(db.session.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND xact_start IS NOT NULL")).scalar())
    finally:
        db.session.rollback()


def _wait_for(condition, seconds=30, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def _worker_env(backend, app):
    return {**os.environ, "KINDSTRIDE_DATABASE_URL": backend["DATABASE_URL"],
            "KINDSTRIDE_REDIS_URL": backend["REDIS_URL"], "KINDSTRIDE_SECRET_KEY": app.config["SECRET_KEY"],
            "KINDSTRIDE_SECRETS_KEY": app.config["SECRETS_KEY"], "KINDSTRIDE_INSTANCE_PATH": backend["INSTANCE_PATH"],
            "KINDSTRIDE_BASE_DOMAIN": BASE_DOMAIN, "KINDSTRIDE_PLUGINS": ",".join(app.config["PLUGINS"]),
            "KINDSTRIDE_TENANTS_DIR": app.config["TENANTS_DIR"], "KINDSTRIDE_ENV": "test"}


def _children(pid):
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


# ------------------------------------------------------------------------------------------------ rq worker

def _big_challenge(app, runners=30, per_runner=50):
    """A tenant whose challenge has runners x per_runner activities, judged once; returns (tenant, challenge)."""
    tenant = create_tenant("faults", "Fault Club", "en", "USD", "UTC")
    with tenant_scope(tenant.id):
        challenge = challenges.create_challenge({
            "slug": "run", "title": "Run", "sports": ["run"], "divisions": ["A", "B"], "preset": "vn-charity-run-2023",
            "registration_opens_at": (NOW - timedelta(days=30)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=20)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat()})
        divisions = challenges.divisions_of(challenge)
        teams = [challenges.create_team(challenge, f"Team {n}", divisions[n % 2].id) for n in range(6)]
        rng = random.Random(7)
        for index in range(runners):
            user = accounts.sign_up(f"r{index}@faults.example", f"Runner {index}", "correct horse battery")
            challenges.register(challenge, user, {"team_id": teams[index % 6].id})
            for number in range(per_runner):
                start = NOW - timedelta(hours=2 + number * 6 + index % 5)
                km = rng.choice([0.8, 3, 5, 8, 12])
                pace = rng.choice([200, 280, 330, 420])
                db.session.add(Activity(
                    user_id=user.id, source=rng.choice(["device", "app", "api"]), sport="run", start=start,
                    elapsed_s=km * pace, moving_s=km * pace, distance_m=km * 1000, has_gps=True,
                    split_paces=[pace] * int(km), fingerprint=f"{index}-{number}",
                    received_at=start + timedelta(hours=1)))
        db.session.commit()
        return tenant, challenge


def test_a_worker_killed_mid_job_loses_nothing(make_app, services):
    app = make_app()
    connection = redis.Redis.from_url(services["REDIS_URL"])
    queue = Queue("low", connection=connection)
    with app.app_context():
        tenant, challenge = _big_challenge(app)
        with tenant_scope(tenant.id):
            challenge = db.session.get(challenges.Challenge, challenge.id)
            ruleset = challenges.current_ruleset(challenge)
            challenges.change_ruleset(challenge, ruleset, "version 2: judge everything")
            db.session.commit()
        run_queued_jobs(app)  # version 2 judged in full: a baseline of results
        with tenant_scope(tenant.id):
            challenge = db.session.get(challenges.Challenge, challenge.id)
            total_results = db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult))
            assert total_results == 30 * 50
            ruleset = challenges.current_ruleset(challenge)
            for entry in ruleset["validation"]:
                if entry["rule"] == "distance_limits":
                    entry["params"]["min_m"] = 4000
            challenges.change_ruleset(challenge, ruleset, "version 3: at least 4 km")
            db.session.commit()
            version = challenge.ruleset_version
        assert queue.count == 1

        worker = subprocess.Popen([KINDSTRIDE, "worker", "--queue", "low"], env=_worker_env(services, app),
                                  cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        started = StartedJobRegistry("low", connection=connection)
        try:
            assert _wait_for(lambda: started.get_job_ids(), 60), worker.stderr.read1().decode()
            # Killed inside the job: once its work horse exists and has a transaction open in the database.
            assert _wait_for(lambda: [pid for pid in _children(worker.pid) if os.getpgid(pid) == pid], 30)
            assert _wait_for(_another_transaction_open, 30), "the job never started writing"
            horses = [pid for pid in _children(worker.pid) if os.getpgid(pid) == pid]
            assert len(horses) == 1 and _alive(horses[0]), "no work horse is busy with the job"
            # The whole worker dies at once, as in a machine or container loss: the horse and its parent.
            os.kill(horses[0], signal.SIGKILL)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        assert _wait_for(lambda: not _alive(horses[0]), 10)
        job_ids = started.get_job_ids()
        assert len(job_ids) == 1
        with tenant_scope(tenant.id):
            half = db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult)
                                     .where(ActivityResult.ruleset_version == version))
            db.session.commit()
        assert half == 0  # the killed job's transaction was rolled back whole: nothing half-judged

        # rq's own recovery: the registry cleanup hands an abandoned job back (with its retries), and the retry
        # is queued now rather than after its backoff.
        started.cleanup(timestamp=time.time() + 10 * 24 * 3600)
        scheduled = ScheduledJobRegistry("low", connection=connection)
        for job_id in scheduled.get_job_ids():
            scheduled.remove(job_id)
            queue.enqueue_job(Job.fetch(job_id, connection=connection))
        assert queue.job_ids == job_ids

        again = subprocess.run([KINDSTRIDE, "worker", "--queue", "low", "--burst"], env=_worker_env(services, app),
                               cwd=REPO, capture_output=True, timeout=300)
        assert again.returncode == 0, again.stderr.decode()[-2000:]
        assert FailedJobRegistry("low", connection=connection).count == 0
        assert queue.count == 0 and not started.get_job_ids()
        with tenant_scope(tenant.id):
            judged = db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult)
                                       .where(ActivityResult.ruleset_version == version))
            assert judged == total_results
            assert totals_problems(challenge.id) == []


# ------------------------------------------------------------------------------------------------ Redis

class OwnRedis:
    """A redis-server of this test's own on a free port, to stop and start at will."""

    def __init__(self):
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        assert _wait_for(self._pings, 10)

    def _pings(self):
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def own_redis(services):
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        missing("redis-server is not installed")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def _activity(start, km=5, pace=330):
    return {"sport": "run", "start": start.isoformat(), "moving_s": km * pace, "distance_m": km * 1000,
            "has_gps": True, "split_paces_s_per_km": [pace] * km}


def test_redis_stops_and_comes_back(make_app, services, own_redis):
    app = make_app(REDIS_URL=own_redis.url, PLUGINS=PLUGINS)
    with app.app_context():
        world = populate(app, "alpha", "qqalphamarkqq")
        client = app.test_client().on(world.host)
        runner = {"Authorization": f"Bearer {world.tokens['runner']}"}
        first = client.post("/api/v1/activities", json=_activity(NOW - timedelta(hours=50)), headers=runner)
        assert first.status_code == 201
        run_queued_jobs(app)

        own_redis.stop()
        # Pages, the API, sign-in (rate-limited through Redis) and new activities all still work.
        assert client.get("/challenges/run").status_code == 200
        assert client.get("/api/v1/challenges/run/leaderboard").status_code == 200
        signed_in = app.test_client().on(world.host).submit("/signin", {"email": world.emails["admin"],
                                                                         "password": "correct horse battery"})
        assert signed_in.status_code == 302
        during = client.post("/api/v1/activities", json=_activity(NOW - timedelta(hours=46)), headers=runner)
        assert during.status_code == 201, during.get_data(as_text=True)
        with tenant_scope(world.tenant_id):
            judged = db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult).where(
                ActivityResult.activity_id == during.get_json()["id"]))
            db.session.commit()
        assert judged == 2  # judged without the queue (in both of the runner's challenges), not lost

        own_redis.start()  # the same address, empty (a restart without persistence)
        after = client.post("/api/v1/activities", json=_activity(NOW - timedelta(hours=42)), headers=runner)
        assert after.status_code == 201
        assert Queue("default", connection=redis.Redis.from_url(own_redis.url)).count >= 1  # queued again
        run_queued_jobs(app)
        with tenant_scope(world.tenant_id):
            for response in (first, during, after):
                assert db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult).where(
                    ActivityResult.activity_id == response.get_json()["id"])) == 2
            run = challenges.get_challenge("run")
            assert totals_problems(run.id) == []
            db.session.commit()


# ------------------------------------------------------------------------------------------------ PostgreSQL

def _terminate(owner, database, only_pid=None):
    """Terminate the app role's backends and wait until they are gone (up to 5 s): signalling alone returns at
    once, and the next request could check its connection out before the backend has hung up."""
    with owner.connect() as connection:
        query = ("select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = :db "
                 "and usename = :role and pid <> pg_backend_pid()")
        params = {"db": database, "role": "kindstride_app"}
        if only_pid is not None:
            query += " and pid = :pid"
            params["pid"] = only_pid
        return len(connection.execute(sa.text(query), params).all())


def test_the_database_connection_dies_mid_request(make_app, services):
    app = make_app(TESTING=False, PLUGINS=PLUGINS)
    owner = _owner_engine(services)
    database = make_url(services["DATABASE_URL"]).database
    with app.app_context():
        world = populate(app, "alpha", "qqalphamarkqq")
        engine = db.engine
    kill = {"armed": False, "done": 0}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _kill_own_backend(connection, cursor, statement, parameters, context, executemany):
        # The first query on challenges once armed: terminate this very connection, from the owner's side.
        if kill["armed"] and "FROM challenges" in statement:
            kill["armed"] = False
            pid = connection.connection.dbapi_connection.info.backend_pid
            kill["done"] += _terminate(owner, database, only_pid=pid)

    client = app.test_client().on(world.host)
    runner = {"Authorization": f"Bearer {world.tokens['runner']}"}
    try:
        for path, headers in (("/challenges/run", {}), ("/api/v1/challenges/run/leaderboard", {}),
                              ("/api/v1/challenges/run/registration", runner)):
            kill["armed"] = True
            failed = client.get(path, headers=headers)
            assert kill["done"], path
            kill["done"] = 0
            assert failed.status_code == 503, (path, failed.status_code)
            body = failed.get_data(as_text=True)
            assert "Traceback" not in body and "psycopg" not in body and "SELECT" not in body
            assert failed.headers.get("Retry-After")
            if path.startswith("/api/"):
                assert failed.get_json()["code"] == 503
            else:
                assert failed.mimetype == "text/html"
            assert client.get(path, headers=headers).status_code == 200, path  # the next request works
        # A write that dies half-way is rolled back whole; sent again, it is stored once.
        kill["armed"] = True
        body = _activity(NOW - timedelta(hours=30), km=7)
        posted = client.patch("/api/v1/challenges/run/registration", json={"team_id": world.team_ids[1]},
                              headers=runner)
        assert posted.status_code == 503
        assert client.patch("/api/v1/challenges/run/registration", json={"team_id": world.team_ids[1]},
                            headers=runner).status_code == 200
        assert client.post("/api/v1/activities", json=body, headers=runner).status_code == 201
        # Connections killed between requests: the pool's pre-ping replaces them and nobody notices.
        assert _terminate(owner, database) >= 1
        for path in ("/challenges/run", "/api/v1/challenges/run/totals", "/"):
            assert client.get(path).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", _kill_own_backend)
        owner.dispose()
    run_queued_jobs(app)
    with app.app_context(), tenant_scope(world.tenant_id):
        assert problems() == []
        assert totals_problems(challenges.get_challenge("run").id) == []


# ------------------------------------------------------------------------------------------------ webhooks

@pytest.fixture
def paid(make_app, services):
    """Tenant alpha on VNPay's fake, served over HTTP, with three donations paid on VNPay's page (whose IPNs
    have not been delivered yet)."""
    vnpay = start_fake_vnpay()
    app = make_app(PLUGINS=PLUGINS, GATEWAY_ENDPOINTS={"vnpay.payment_url": vnpay.payment_url,
                                                       "vnpay.api_url": vnpay.api_url})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        world = populate(app, "alpha", "qqalphamarkqq", currency="VND", vnpay=(vnpay.tmn_code, vnpay.hash_secret),
                         domains=["127.0.0.1"])
    url = f"http://127.0.0.1:{server.server_port}"
    payments = []
    for index, amount in enumerate((50_000, 120_000, 75_000)):
        started = requests.post(f"{url}/api/v1/challenges/run/donations", timeout=10, json={
            "amount": amount, "currency": "VND", "gateway": "vnpay", "donor_name": f"Donor {index}",
            "donor_email": "donor@example.com", "idempotency_key": f"faults-{index:04d}"})
        assert started.status_code == 201, started.text
        page = requests.get(started.json()["redirect_url"], allow_redirects=False, timeout=10)
        assert page.status_code == 302  # paid; the donor closes the tab before coming back
        with app.app_context(), tenant_scope(world.tenant_id):
            payments.append((started.json()["reference"], db.session.scalar(
                sa.select(Payment.gateway_ref).where(Payment.reference == started.json()["reference"])), amount))
            db.session.commit()
    yield app, world, vnpay, f"{url}/payments/vnpay/webhook", payments
    server.shutdown()
    vnpay.stop()


def _credited(app, world, reference):
    with app.app_context(), tenant_scope(world.tenant_id):
        count = db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.reference == f"payment:{reference}:captured"))
        db.session.commit()
        return count


def _donated(app, world):
    from kindstride.fundraising.services import money_totals

    with app.app_context(), tenant_scope(world.tenant_id):
        donated = money_totals(challenges.get_challenge("run")).donated
        db.session.commit()
        return donated


def test_a_notification_ten_times_out_of_order_and_at_once_is_counted_once(paid):
    app, world, vnpay, webhook, payments = paid
    before = _donated(app, world)
    # A stale "canceled" notification for the first payment (another attempt's result), signed by VNPay.
    stale = vnpay.ipn_params(payments[0][1])
    stale.update(vnp_ResponseCode="24", vnp_TransactionStatus="02")
    stale.pop("vnp_SecureHash")
    stale["vnp_SecureHash"] = vnpay.sign_query(stale)
    deliveries = [vnpay.ipn_params(ref) for _reference, ref, _amount in payments[:2] for _ in range(10)] + [stale] * 3
    random.Random(11).shuffle(deliveries)
    answers = [requests.get(webhook, params=params, timeout=10) for params in deliveries]
    assert all(answer.status_code == 200 for answer in answers), [a.status_code for a in answers]
    codes = [answer.json()["RspCode"] for answer in answers]
    assert codes.count("00") == 2 and set(codes) <= {"00", "02"}, codes
    # The third payment: ten deliveries at the same moment.
    params = vnpay.ipn_params(payments[2][1])
    with ThreadPoolExecutor(10) as pool:
        concurrent = list(pool.map(lambda _: requests.get(webhook, params=params, timeout=20), range(10)))
    statuses = [answer.status_code for answer in concurrent]
    assert all(status in (200, 503) for status in statuses), statuses  # 503: "busy, send it again"
    assert [a.json()["RspCode"] for a in concurrent if a.status_code == 200].count("00") <= 1
    # VNPay retries what was not acknowledged; then everything is acknowledged.
    retried = requests.get(webhook, params=params, timeout=10)
    assert retried.status_code == 200 and retried.json()["RspCode"] in ("00", "02")
    for reference, _ref, _amount in payments:
        assert _credited(app, world, reference) == 1
    assert _donated(app, world) == before + sum(amount for _r, _g, amount in payments)
    with app.app_context(), tenant_scope(world.tenant_id):
        assert problems() == []
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) >= 3
        assert totals_problems(challenges.get_challenge("run").id) == []


def test_a_notification_while_the_database_is_down_is_retried_and_credited_once(paid, services):
    app, world, vnpay, webhook, payments = paid
    reference, txn_ref, amount = payments[0]
    before = _donated(app, world)
    owner = _owner_engine(services)
    database = make_url(services["DATABASE_URL"]).database
    try:
        with owner.connect() as connection:
            connection.exec_driver_sql(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC, kindstride_app')
        _terminate(owner, database)
        down = requests.get(webhook, params=vnpay.ipn_params(txn_ref), timeout=20)
        assert down.status_code >= 500 and down.status_code != 200  # not acknowledged: VNPay will retry
        assert requests.get(webhook.replace("/payments/vnpay/webhook", "/challenges/run"), timeout=20).status_code \
            == 503
    finally:
        with owner.connect() as connection:
            connection.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{database}" TO PUBLIC, kindstride_app')
        owner.dispose()
    assert _credited(app, world, reference) == 0
    retry = requests.get(webhook, params=vnpay.ipn_params(txn_ref), timeout=20)
    assert retry.status_code == 200 and retry.json()["RspCode"] == "00"
    again = requests.get(webhook, params=vnpay.ipn_params(txn_ref), timeout=20)
    assert again.status_code == 200 and again.json()["RspCode"] == "02"
    assert _credited(app, world, reference) == 1
    assert _donated(app, world) == before + amount
    with app.app_context(), tenant_scope(world.tenant_id):
        assert problems() == []
        db.session.commit()
