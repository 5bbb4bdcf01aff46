"""The production topology on 127.0.0.1: two `kindstride web` instances (gunicorn) behind nginx, two rq
workers, rq cron, PostgreSQL (as the app role, row-level security on) and Redis (a redis-server of its own
when the machine has one, so no other test run shares its queues).

Every process runs the command deploy/compose.yaml gives it (read from there), with its configuration
from the environment. Traffic goes through nginx with a tenant's Host header; in the middle one web
instance and one worker are stopped (SIGTERM, as an orchestrator does). Every request completes, every
activity is stored once and judged, and /readyz tells the truth throughout: 200 wherever the database and
Redis answer, and 503 naming both on an instance whose database and Redis are unreachable.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml
from redis import Redis

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.conftest import BASE_DOMAIN
from tests.support.services import missing

pytestmark = [pytest.mark.topology, pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
NGINX_SITE = ROOT / "deploy" / "nginx" / "kindstride.conf"
# The processes of the topology: compose service -> what it is.
PROCESSES = ("migrate", "web", "worker", "cron")
TENANT = "topo"
HOST = f"{TENANT}.{BASE_DOMAIN}"
METRICS_TOKEN = "topology-metrics-token"
RUNNERS, RUNS_EACH = 6, 8
CONCURRENCY = 4  # client threads
NOW = datetime.now(UTC).replace(microsecond=0)


def process_commands(compose_file=COMPOSE_FILE) -> dict[str, list[str]]:
    """The command of each kindstride process, as deploy/compose.yaml runs it."""
    services = yaml.safe_load(compose_file.read_text())["services"]
    return {name: list(services[name]["command"]) for name in PROCESSES}


def _executable(command):
    assert command[0] == "kindstride", command
    script = Path(sys.executable).with_name("kindstride")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "kindstride.cli"]
    return [*head, *command[1:]]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(what, predicate, deadline_s, processes=()):
    """Poll predicate until it returns something truthy; fail (with the logs) past the deadline or when one
    of the processes it depends on has exited."""
    deadline = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.name} exited ({process.returncode}) while waiting for {what}\n{process.tail()}")
        try:
            result = predicate()
            if result:
                return result
        except Exception as error:  # (not there yet)
            last_error = error
        time.sleep(0.2)
    logs = "\n".join(process.tail() for process in processes)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error})\n{logs}")


class Process:
    """A process of the topology, in its own process group, its output in a log file."""

    def __init__(self, name, argv, env, logs):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)

    @property
    def returncode(self):
        return self.popen.returncode

    def poll(self):
        return self.popen.poll()

    def stop(self, sig=signal.SIGTERM, timeout=45):
        """Signal the process (not its group: gunicorn and rq stop their children themselves) and wait."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not stop within {timeout}s after {sig.name}\n{self.tail()}")

    def shut_down(self):
        """Teardown: SIGTERM (so gunicorn removes its metrics folder), then whatever of the group is left."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self._log.close()

    def tail(self, lines=40):
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} (last {lines} lines of {self.log_path}) ---\n" + "\n".join(text[-lines:])

    def lines(self):
        self._log.flush()
        return self.log_path.read_text(errors="replace").splitlines()


def _nginx():
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        missing("nginx is missing: apt-get install nginx (make system-deps installs it)")
    return found


def _nginx_config(work, port, upstream_ports):
    servers = "\n    ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstream_ports)
    site = NGINX_SITE.read_text().replace("@UPSTREAM_SERVERS@", servers).replace("@LISTEN@", f"127.0.0.1:{port}")
    (work / "kindstride.conf").write_text(site)
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp folders below
    config = work / "nginx.conf"
    config.write_text(f"""{user}worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {work}/nginx-access.log;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/kindstride.conf;
}}
""")
    return config


def _get(url, **kwargs):
    return requests.get(url, timeout=10, **kwargs)


class Prober(threading.Thread):
    """Asks /readyz every 100 ms at each address, recording (time, status) with "down" for a refused
    connection, until stopped."""

    def __init__(self, targets):
        super().__init__(daemon=True)
        self.targets = targets  # name -> base url
        self.seen = {name: [] for name in targets}
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            for name, base in self.targets.items():
                try:
                    status = _get(f"{base}/readyz").status_code
                except requests.ConnectionError:
                    status = "down"
                self.seen[name].append((time.monotonic(), status))
            self._stop_event.wait(0.1)

    def stop(self):
        self._stop_event.set()
        self.join(10)


@pytest.fixture
def topology(app, backend, tmp_path):
    if not backend["DATABASE_URL"].startswith("postgresql") or not backend["REDIS_URL"]:
        pytest.skip("the topology needs PostgreSQL and Redis (KINDSTRIDE_REQUIRE_SERVICES=1 fails instead)")
    nginx = _nginx()
    commands = process_commands()
    secrets_key = (Path(backend["INSTANCE_PATH"]) / "secrets_key").read_text().strip()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KINDSTRIDE_") and key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({
        "KINDSTRIDE_ENV": "production",
        "KINDSTRIDE_SECRET_KEY": app.config["SECRET_KEY"],
        "KINDSTRIDE_SECRETS_KEY": secrets_key,
        "KINDSTRIDE_DATABASE_URL": backend["DATABASE_URL"],
        "KINDSTRIDE_MIGRATE_DATABASE_URL": backend["MIGRATE_DATABASE_URL"],
        "KINDSTRIDE_BASE_DOMAIN": BASE_DOMAIN,
        "KINDSTRIDE_INSTANCE_PATH": backend["INSTANCE_PATH"],
        "KINDSTRIDE_LOG_FORMAT": "json",
        "KINDSTRIDE_TRUSTED_PROXIES": "1",
        "KINDSTRIDE_METRICS_TOKEN": METRICS_TOKEN,
        "KINDSTRIDE_WEB_WORKERS": "2",
        "KINDSTRIDE_WEB_THREADS": "4",
    })
    logs = tmp_path / "logs"
    logs.mkdir()
    started = []

    def start(name, command, **extra_env):
        argv = _executable(command) if command[0] == "kindstride" else command
        process = Process(name, argv, {**env, **extra_env}, logs)
        started.append(process)
        return process

    try:
        redis_url = backend["REDIS_URL"]
        redis_server = shutil.which("redis-server")
        if redis_server:
            # A Redis of its own: no other test run on this machine can share (or flush) its queues.
            redis_port = _free_port()
            redis_process = start("redis", [redis_server, "--bind", "127.0.0.1", "--port", str(redis_port),
                                            "--save", "", "--appendonly", "no"])
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            _wait_until("redis", lambda: Redis.from_url(redis_url).ping(), 30, [redis_process])
        env["KINDSTRIDE_REDIS_URL"] = redis_url
        migrate = start("migrate", commands["migrate"])
        assert migrate.popen.wait(120) == 0, migrate.tail()  # already at head: changes nothing

        ports = {"a": _free_port(), "b": _free_port(), "broken": _free_port()}
        web = {name: start(f"web-{name}", commands["web"], KINDSTRIDE_WEB_BIND=f"127.0.0.1:{ports[name]}")
               for name in ("a", "b")}
        # An instance whose database and Redis cannot be reached: it lives, but it is not ready.
        closed = _free_port()
        broken = start("web-broken", commands["web"], KINDSTRIDE_WEB_BIND=f"127.0.0.1:{ports['broken']}",
                       KINDSTRIDE_WEB_WORKERS="1",
                       KINDSTRIDE_DATABASE_URL=f"postgresql+psycopg://kindstride_app@127.0.0.1:{closed}/none",
                       KINDSTRIDE_REDIS_URL=f"redis://127.0.0.1:{closed}/0")
        workers = [start(f"worker-{n}", commands["worker"]) for n in (1, 2)]
        cron = start("cron", commands["cron"])

        nginx_port = _free_port()
        work = tmp_path / "nginx"
        work.mkdir()
        config = _nginx_config(work, nginx_port, [ports["a"], ports["b"]])
        proxy = start("nginx", [nginx, "-e", str(work / "nginx-error.log"), "-p", str(work), "-c", str(config),
                                "-g", "daemon off;"])
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        urls["nginx"] = f"http://127.0.0.1:{nginx_port}"
        for name in ("a", "b"):
            _wait_until(f"web {name} ready", lambda n=name: _get(f"{urls[n]}/readyz").status_code == 200, 90,
                        [web[name]])
        _wait_until("nginx", lambda: _get(f"{urls['nginx']}/healthz").status_code == 200, 30, [proxy])
        _wait_until("the broken instance alive", lambda: _get(f"{urls['broken']}/healthz").status_code == 200,
                    90, [broken])
        yield {"urls": urls, "web": web, "workers": workers, "cron": cron, "nginx": proxy, "broken": broken,
               "redis_url": redis_url}
    finally:
        for process in reversed(started):
            process.shut_down()


def _token(tenant_id, user_id, scopes):
    with tenant_scope(tenant_id):
        _record, token = accounts.create_api_token(db.session.get(User, user_id), "topology", scopes, 30)
        db.session.commit()
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def people(app, make_user):
    """Tenant `topo`: an admin and runners, each with an API token."""
    from kindstride.tenancy.services import create_tenant

    tenant_id = create_tenant(TENANT, "Topology Runners", "en", "USD", "UTC").id
    admin = make_user(tenant_id, "admin@topo.example", roles=("participant", "admin"))
    headers = {"admin": _token(tenant_id, admin, ["read", "admin", "activities:write"])}
    for n in range(RUNNERS):
        runner = make_user(tenant_id, f"runner{n}@topo.example")
        headers[f"runner{n}"] = _token(tenant_id, runner, ["read", "activities:write"])
    return tenant_id, headers


class Client:
    """Requests through nginx to the tenant's site. A POST an instance may have received before it stopped
    is not replayed by nginx; like any API client, this one retries it (activity posts are idempotent)."""

    RETRY_STATUSES = {502, 503, 504}

    def __init__(self, base):
        self.base = base
        self.retries = 0
        self._lock = threading.Lock()

    def request(self, method, path, headers, attempts=5, **kwargs):
        for attempt in range(attempts):
            try:
                response = requests.request(method, f"{self.base}{path}", headers={"Host": HOST, **headers},
                                            timeout=30, **kwargs)
                if response.status_code not in self.RETRY_STATUSES:
                    return response
            except requests.ConnectionError:
                response = None
            with self._lock:
                self.retries += 1
            time.sleep(0.2 * (attempt + 1))
        raise AssertionError(f"{method} {path} failed {attempts} times (last: {response})")


def _challenge_body():
    return {
        "slug": "topology-run", "title": "Topology run", "sports": ["run"], "timezone": "UTC",
        "registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
        "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
        "counting_start": (NOW - timedelta(days=5)).isoformat(),
        "counting_end": (NOW + timedelta(days=19)).isoformat(),
        "goal_km": 5000, "divisions": ["Company"], "preset": "vn-charity-run-2024",
    }


def _run_body(runner, k):
    start = NOW - timedelta(hours=2 + 5 * k, minutes=7 * runner)
    return {"sport": "run", "start": start.isoformat(), "moving_s": 5 * 330, "distance_m": 5000, "has_gps": True,
            "split_paces_s_per_km": [330] * 5}


def _queue_state(redis_url):
    """Jobs anywhere in rq, per queue and place (failed ones included); all zero when the work is done."""
    from rq import Queue
    from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    from kindstride.jobs.queue import QUEUES

    connection = Redis.from_url(redis_url)
    state = {}
    for name in QUEUES:
        queue = Queue(name, connection=connection)
        state[name] = {
            "waiting": connection.llen(queue.key),
            "dequeued": connection.llen(queue.intermediate_queue_key),  # taken by a worker, not yet started
            **{place: connection.zcard(cls(name, connection=connection).key)
               for place, cls in (("started", StartedJobRegistry), ("scheduled", ScheduledJobRegistry),
                                  ("deferred", DeferredJobRegistry), ("failed", FailedJobRegistry))},
        }
    return state


def _results(tenant_id):
    from kindstride.activities.models import Activity, ActivityResult

    with tenant_scope(tenant_id):
        activities = db.session.scalar(sa.select(sa.func.count()).select_from(Activity))
        statuses = dict(db.session.execute(sa.select(ActivityResult.status, sa.func.count())
                                           .group_by(ActivityResult.status)).all())
        db.session.commit()
    return activities, statuses


def test_two_web_instances_behind_nginx_two_workers_and_cron_lose_nothing(topology, people):
    tenant_id, headers = people
    urls = topology["urls"]
    client = Client(urls["nginx"])
    prober = Prober({"nginx": urls["nginx"], "a": urls["a"], "b": urls["b"]})
    prober.start()
    stopped_at = {}
    try:
        created = client.request("POST", "/api/v1/challenges", headers["admin"], json=_challenge_body())
        assert created.status_code == 201, created.text
        for n in range(RUNNERS):
            registered = client.request("POST", "/api/v1/challenges/topology-run/registrations",
                                        headers[f"runner{n}"], json={"gender": "female" if n % 2 else "male"})
            assert registered.status_code == 201, registered.text

        posts = [(n, k) for k in range(RUNS_EACH) for n in range(RUNNERS)]
        answers = {}

        def post(item):
            n, k = item
            response = client.request("POST", "/api/v1/activities", {**headers[f"runner{n}"],
                                                                     "X-Request-ID": f"topology-{n}-{k}"},
                                      json=_run_body(n, k))
            answers[item] = (response.status_code, response.headers.get("X-Request-ID"), response.json())

        third = len(posts) // 3
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(post, posts[:third]))
            rest = [pool.submit(post, item) for item in posts[third:]]
            # In the middle of the traffic: one web instance and one worker go away, as in a rolling update.
            _wait_until("more traffic", lambda: len(answers) >= third + 4, 60)
            stopped_at["web"] = time.monotonic()
            assert topology["web"]["a"].stop() == 0, topology["web"]["a"].tail()
            assert topology["workers"][0].stop() == 0, topology["workers"][0].tail()
            for future in rest:
                future.result()

        assert len(answers) == RUNNERS * RUNS_EACH
        assert {status for status, _id, _body in answers.values()} == {201}
        assert all(request_id == f"topology-{n}-{k}" for (n, k), (_s, request_id, _b) in answers.items())
        ids = {body["id"] for _status, _rid, body in answers.values()}
        assert len(ids) == RUNNERS * RUNS_EACH  # each run stored once

        # The remaining worker drains the queues: every activity is judged, and no job is left or failed.
        expected = (RUNNERS * RUNS_EACH, {"accepted": RUNNERS * RUNS_EACH})

        def done():
            results, queues = _results(tenant_id), _queue_state(topology["redis_url"])
            idle = not any(any(places.values()) for places in queues.values())
            assert results == expected and idle, f"(activities, verdicts) {results}; rq {queues}"
            return True

        # Twice, half a second apart: a job moving between two places in rq is never taken for "done".
        _wait_until("every activity judged and the queues idle",
                    lambda: done() and time.sleep(0.5) is None and done(), 120, [topology["workers"][1]])
        totals = client.request("GET", "/api/v1/challenges/topology-run/totals", {}).json()
        assert totals["activities"] == RUNNERS * RUNS_EACH and totals["distance_m"] == RUNNERS * RUNS_EACH * 5000
    finally:
        prober.stop()

    # /readyz told the truth: through nginx and on b always ready; a ready until it stopped, then gone.
    assert {status for _t, status in prober.seen["nginx"]} == {200}, prober.seen["nginx"]
    assert {status for _t, status in prober.seen["b"]} == {200}
    before = {status for t, status in prober.seen["a"] if t < stopped_at["web"]}
    after = [status for t, status in prober.seen["a"] if t > stopped_at["web"]]
    assert before == {200} and after[-1] == "down" and set(after) <= {200, "down"}

    # The unreachable database and Redis are named; the instance itself is alive.
    broken = _get(f"{urls['broken']}/readyz")
    assert broken.status_code == 503
    problems = broken.json()["problems"]
    assert any(p.startswith("database:") for p in problems) and any(p.startswith("redis:") for p in problems)
    assert _get(f"{urls['broken']}/healthz").status_code == 200

    # cron enqueued its periodic fan-out at start, and a worker ran it.
    from rq.cron import get_cron_job_ids

    from kindstride.accounts.maintenance import purge_spent_account_tokens
    from kindstride.jobs.queue import job_path

    assert get_cron_job_ids(job_path(purge_spent_account_tokens), Redis.from_url(topology["redis_url"]))

    # Metrics: platform-wide ingest from any instance; the token is required.
    assert _get(f"{urls['nginx']}/metrics").status_code == 401
    metrics = _get(f"{urls['nginx']}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert f'kindstride_activities_created_total{{source="api"}} {float(RUNNERS * RUNS_EACH)}' in metrics
    assert 'kindstride_queue_jobs{queue="default"} 0.0' in metrics
    assert "kindstride_rq_workers 1.0" in metrics  # the stopped worker said goodbye
    assert 'kindstride_http_requests_total{endpoint="api_activities.Activities",method="POST",status="201"}' \
        in metrics

    # Structured logs: JSON access lines with the tenant and the caller's request id.
    access = [json.loads(line) for process in topology["web"].values() for line in process.lines()
              if line.startswith("{") and '"gunicorn.access"' in line]
    posted = [line for line in access if line["path"] == "/api/v1/activities"]
    assert posted and all(line["tenant"] == TENANT and line["request_id"].startswith("topology-") for line in posted)
    # Only requests that were already queued at the stopping instance (connection reset, so nginx does not
    # replay a POST) came back as 502 and were retried: at most one per request in flight.
    print(f"client retries: {client.retries}")
    assert client.retries <= CONCURRENCY, f"{client.retries} client retries"
