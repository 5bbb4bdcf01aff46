"""Operations: /healthz, /readyz and /metrics on any host, request ids, structured logs, `kindstride web`,
gunicorn's configuration and logger, and `kindstride secrets rotate`."""

import io
import json
import logging
import os
import runpy
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.config import ConfigError
from kindstride.db import db
from kindstride.ops.logging import ContextFilter, JsonFormatter
from kindstride.ops.metrics import EXTENSION as METRICS
from kindstride.ops.metrics import count_after_commit
from kindstride.tenancy.scope import tenant_scope
from tests.conftest import BASE_DOMAIN
from tests.support.jobs import run_queued_jobs

ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _token(tenant_id, user_id, scopes=("read", "activities:write")):
    with tenant_scope(tenant_id):
        _record, token = accounts.create_api_token(db.session.get(User, user_id), "ops", list(scopes), 30)
        db.session.commit()
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def capture_json_logs():
    """The app's log lines as the JSON formatter writes them, through the same context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


# -- health and readiness -------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", [BASE_DOMAIN, "alpha." + BASE_DOMAIN, "nobody.example", "10.1.2.3:8000"])
def test_healthz_answers_on_any_host_without_the_database(app, tenants, host):
    statements = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    client = app.test_client().on(host)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "alive"}
    assert response.headers["Cache-Control"] == "no-store"
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    assert statements == []  # no tenant resolution, no query


def test_readyz_is_ready_on_a_migrated_database_on_any_host(app):
    for host in (BASE_DOMAIN, "unknown.example", "127.0.0.1"):
        response = app.test_client().on(host).get("/readyz")
        assert response.status_code == 200, response.json
        checks = response.json["checks"]
        assert checks["database"] == "ok" and checks["migrations"] == "ok"
        assert checks["redis"] == ("ok" if app.config["REDIS_URL"] else "not configured")
        assert response.json["problems"] == []


def test_readyz_names_an_unreachable_database_and_redis(make_app, tmp_path):
    closed = _closed_port()
    broken = make_app(DATABASE_URL=f"sqlite:///{tmp_path}/missing/folder/db.sqlite",
                      REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    client = broken.test_client().on("127.0.0.1")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "unready" and body["checks"]["database"] == "unreachable"
    assert body["checks"]["redis"] == "unreachable" and body["checks"]["migrations"] == "unknown"
    assert [problem.split(":")[0] for problem in body["problems"]] == ["database", "redis"]
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_readyz_wants_migrations_at_head_but_tolerates_a_newer_schema(app, backend):
    owner = sa.create_engine(backend["MIGRATE_DATABASE_URL"], poolclass=sa.pool.NullPool)
    with owner.connect() as connection:
        head = connection.execute(sa.text("select version_num from alembic_version")).scalar_one()

    def set_revision(revision):
        with owner.begin() as connection:
            connection.execute(sa.text("update alembic_version set version_num = :r"), {"r": revision})

    client = app.test_client().on("127.0.0.1")
    try:
        set_revision("0001_foundation")
        behind = client.get("/readyz")
        assert behind.status_code == 503 and behind.json["checks"]["migrations"] == "behind"
        assert behind.json["problems"] == [
            f"migrations: the database is at 0001_foundation, this code needs {head}: run `kindstride db upgrade`"]
        set_revision("9999_from_a_newer_release")
        ahead = client.get("/readyz")
        assert ahead.status_code == 200 and ahead.json["checks"]["migrations"] == "ahead"
    finally:
        set_revision(head)
        owner.dispose()
    assert client.get("/readyz").status_code == 200


# -- request ids and logs -------------------------------------------------------------------------------------

def test_request_ids_are_taken_when_plain_and_made_otherwise(app, tenants):
    client = app.test_client().on("alpha")
    for path in ("/", "/healthz", "/no-such-page"):
        assert client.get(path, headers={"X-Request-ID": "lb-7f3a:01"}).headers["X-Request-ID"] == "lb-7f3a:01"
    made = client.get("/", headers={"X-Request-ID": "x" * 200}).headers["X-Request-ID"]
    assert len(made) == 32 and made != "x" * 200
    spoofed = client.get("/", headers={"X-Request-ID": 'a"b<script>'}).headers["X-Request-ID"]
    assert '"' not in spoofed
    assert client.get("/").headers["X-Request-ID"] != client.get("/").headers["X-Request-ID"]


def test_json_log_lines_carry_the_tenant_and_the_request_id(make_app, capture_json_logs):
    app = make_app(LOG_FORMAT="json")

    @app.route("/ops-log-probe")
    def probe():
        # (not app.logger: the backend fixture's migration ran alembic's fileConfig, which disables the
        # loggers that existed then)
        logging.getLogger("kindstride.ops.probe").info("probing", extra={"detail": 42})
        return "ok"

    with app.app_context():
        from kindstride.tenancy.services import create_tenant

        tenant_id = create_tenant("alpha", "Alpha Corp", "en", "USD", "UTC").id
    response = app.test_client().on("alpha").get("/ops-log-probe", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 200
    line = next(entry for entry in capture_json_logs() if entry["message"] == "probing")
    assert line["tenant"] == "alpha" and line["tenant_id"] == tenant_id and line["request_id"] == "req-123"
    assert line["level"] == "INFO" and line["logger"] == "kindstride.ops.probe" and line["detail"] == 42
    root_handlers = [h for h in logging.getLogger().handlers if getattr(h, "kindstride", False)]
    assert len(root_handlers) == 1 and isinstance(root_handlers[0].formatter, JsonFormatter)


def _log_in_a_job(marker):
    logging.getLogger("kindstride.test").warning("job says %s", marker)


def test_job_log_lines_carry_the_job_and_the_tenant(app, tenants, capture_json_logs):
    from kindstride.jobs import enqueue

    with tenant_scope(tenants["beta"]):
        enqueue(_log_in_a_job, "hello")
        db.session.commit()
    run_queued_jobs(app)
    line = next(entry for entry in capture_json_logs() if entry["message"] == "job says hello")
    assert line["tenant_id"] == tenants["beta"]
    if app.config["REDIS_URL"]:
        assert line["job_id"].startswith(f"tenant-{tenants['beta']}-")


def test_log_settings_are_checked(make_app):
    with pytest.raises(ConfigError, match="KINDSTRIDE_LOG_FORMAT"):
        make_app(LOG_FORMAT="xml")
    with pytest.raises(ConfigError, match="KINDSTRIDE_TRUSTED_PROXIES"):
        make_app(TRUSTED_PROXIES="many")


def test_trusted_proxies_give_the_client_address_and_scheme(make_app):
    for hops, expected in ((0, "127.0.0.1 http"), (1, "203.0.113.9 https")):
        app = make_app(TRUSTED_PROXIES=str(hops))
        app.add_url_rule("/ops-whoami", "ops_whoami", lambda: __import__("flask").request.remote_addr + " "
                         + __import__("flask").request.scheme)
        response = app.test_client().on(None).get(
            "/ops-whoami", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert response.get_data(as_text=True) == expected


# -- metrics --------------------------------------------------------------------------------------------------

def _run_body(hours_ago):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    return {"sport": "run", "start": start.isoformat(), "moving_s": 1800, "distance_m": 5000}


def test_metrics_count_requests_ingest_and_webhooks_without_tenant_labels(app, tenants, make_user):
    from kindstride.activities.services import add_entered
    from kindstride.payments.models import WebhookDelivery

    user_id = make_user(tenants["alpha"], "ann@example.com")
    headers = _token(tenants["alpha"], user_id)
    client = app.test_client().on("alpha")
    assert client.post("/api/v1/activities", json=_run_body(3), headers=headers).status_code == 201
    with tenant_scope(tenants["alpha"]):  # stored, then rolled back: not counted
        add_entered(db.session.get(User, user_id), _run_body(9), source="manual")
        db.session.rollback()
        db.session.add(WebhookDelivery(gateway="stripe", event_id="evt_1", kind="payment_intent.succeeded",
                                       outcome="credited"))
        db.session.commit()
        db.session.execute(sa.select(1))
        count_after_commit("activities_created", "device", 5)  # a bulk import's rows, written without the ORM
        db.session.rollback()
        db.session.execute(sa.select(1))
        count_after_commit("activities_created", "device", 3)
        db.session.commit()
    with pytest.raises(ValueError, match="unknown counter"):
        count_after_commit("activities", "device")

    metrics = app.extensions[METRICS]
    assert metrics.counts("activities_created") == {"api": 1, "device": 3}
    assert metrics.counts("webhook_deliveries") == {"stripe|credited": 1}
    text = app.test_client().on("10.0.0.1").get("/metrics").get_data(as_text=True)
    assert 'kindstride_activities_created_total{source="api"} 1.0' in text
    assert 'kindstride_webhook_deliveries_total{gateway="stripe",outcome="credited"} 1.0' in text
    assert ('kindstride_http_requests_total{endpoint="api_activities.Activities",method="POST",status="201"} 1.0'
            in text)
    assert 'kindstride_http_request_duration_seconds_bucket{endpoint="api_activities.Activities"' in text
    assert "alpha" not in text and "tenant" not in text.replace("tenants", "")  # no tenant label anywhere
    if app.config["REDIS_URL"]:
        assert "kindstride_redis_up 1.0" in text and 'kindstride_queue_jobs{queue="default"}' in text
        assert "kindstride_rq_workers 0.0" in text


def test_queue_depths_come_from_redis_at_scrape_time(app, tenants):
    if not app.config["REDIS_URL"]:
        pytest.skip("needs Redis (KINDSTRIDE_REQUIRE_SERVICES=1 fails instead)")
    from kindstride.jobs import enqueue

    with tenant_scope(tenants["alpha"]):
        enqueue(_log_in_a_job, "later", queue="low")
        enqueue(_log_in_a_job, "later", queue="low")
        db.session.commit()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'kindstride_queue_jobs{queue="low"} 2.0' in text
    assert 'kindstride_queue_failed_jobs{queue="low"} 0.0' in text


def test_metrics_survive_a_redis_outage(make_app):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert "kindstride_redis_up 0.0" in response.get_data(as_text=True)


def test_metrics_token(make_app):
    app = make_app(METRICS_TOKEN="s3cret")
    client = app.test_client().on("127.0.0.1")
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


# -- kindstride web and gunicorn ------------------------------------------------------------------------------

def test_kindstride_web_execs_gunicorn_with_the_deploy_configuration(app, monkeypatch, tmp_path):
    import sys

    calls = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, argv)))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["web", "--log-level", "debug"])
    assert result.exit_code == 0, result.output
    assert calls == [(sys.executable, [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF.resolve()),
                                       "--log-level", "debug", "kindstride.app:create_app()"])]
    missing = runner.invoke(args=["web", "--config", str(tmp_path / "none.py")])
    assert missing.exit_code != 0 and "not found" in missing.output


def test_gunicorn_configuration_reads_the_environment_and_names_only_real_settings(monkeypatch, tmp_path):
    from gunicorn.config import Config

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setenv("KINDSTRIDE_WEB_BIND", "127.0.0.1:9001,127.0.0.1:9002")
    monkeypatch.setenv("KINDSTRIDE_WEB_WORKERS", "3")
    monkeypatch.setenv("KINDSTRIDE_WEB_TIMEOUT", "90")
    settings = {name: value for name, value in runpy.run_path(str(GUNICORN_CONF)).items()
                if not name.startswith("_") and not isinstance(value, type(os))}
    known = Config().settings
    unknown = sorted(set(settings) - set(known) - {"Path"})
    assert not unknown, f"not gunicorn settings (typos?): {unknown}"
    assert settings["bind"] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert settings["workers"] == 3 and settings["timeout"] == 90 and settings["preload_app"] is True
    assert settings["logger_class"] == "kindstride.ops.web.GunicornLogger"
    assert callable(settings["post_fork"]) and callable(settings["child_exit"])
    assert list(metrics_dir.iterdir()) == []  # a fresh start: stale numbers removed
    cfg = Config()
    for name, value in settings.items():
        if name in known:
            cfg.set(name, value)  # gunicorn's own validation of each value
    assert cfg.worker_class_str == "gthread"


def test_post_fork_makes_the_worker_open_its_own_connections(app):
    from kindstride.ops.web import dispose_inherited_connections

    with db.engine.connect() as connection:
        connection.execute(sa.text("select 1"))
    pool = db.engine.pool
    dispose_inherited_connections(app)
    assert db.engine.pool is not pool


def _access_line(monkeypatch, tmp_path, log_format, response, environ):
    """What gunicorn's access log (configured as deploy/gunicorn.conf.py configures it) writes for a request."""
    from gunicorn.config import Config

    from kindstride.ops.web import GunicornLogger

    monkeypatch.setenv("KINDSTRIDE_LOG_FORMAT", log_format)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else the configuration makes its own
    settings = runpy.run_path(str(GUNICORN_CONF))
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", settings["access_log_format"])
    logger = GunicornLogger(cfg)
    stream = io.StringIO()
    for handler in logger.access_log.handlers:
        handler.setStream(stream)
    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=12.5))
    return stream.getvalue()


def test_gunicorn_access_log_is_one_json_line_with_tenant_and_request_id(monkeypatch, tmp_path):
    response = SimpleNamespace(status="201 CREATED", headers=[("X-Request-ID", "req-9")], sent=17)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/activities", "QUERY_STRING": "",
               "REMOTE_ADDR": "203.0.113.9", "HTTP_HOST": "alpha.example", "HTTP_USER_AGENT": 'ua "quoted"',
               "kindstride.tenant": "alpha", "kindstride.endpoint": "api_activities.Activities",
               "RAW_URI": "/api/v1/activities", "SERVER_PROTOCOL": "HTTP/1.1"}
    line = json.loads(_access_line(monkeypatch, tmp_path, "json", response, environ))
    assert line["status"] == 201 and line["tenant"] == "alpha" and line["request_id"] == "req-9"
    assert line["duration_ms"] == 12.5 and line["user_agent"] == 'ua "quoted"' and line["bytes"] == 17


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(("path", "query", "referer"), [
    ("/confirm/Zk3-confirm-SECRET", "", ""),
    ("/password/reset/Zk3-reset-SECRET", "", "https://alpha.example/password/reset/Zk3-older-SECRET"),
    ("/sso/callback", "code=Zk3-code-SECRET&state=Zk3-state-SECRET", ""),
    ("/account/strava/callback", "scope=read&code=Zk3-strava-SECRET", "https://www.strava.com/?token=Zk3-SECRET"),
])
def test_gunicorn_access_log_never_holds_a_one_time_token(monkeypatch, tmp_path, log_format, path, query,
                                                          referer):
    response = SimpleNamespace(status="200 OK", headers=[], sent=5)
    uri = f"{path}?{query}" if query else path
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "RAW_URI": uri,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.9", "HTTP_HOST": "alpha.example",
               "HTTP_REFERER": referer, "HTTP_USER_AGENT": "ua"}
    line = _access_line(monkeypatch, tmp_path, log_format, response, environ)
    assert "SECRET" not in line
    assert "[redacted]" in line and path.split("/")[1] in line  # still says which page was asked for


# -- kindstride secrets rotate --------------------------------------------------------------------------------

def test_secrets_rotate_re_encrypts_every_tenant_with_the_new_key(make_app, make_user):
    from kindstride.activities.strava_models import StravaConnection
    from kindstride.tenancy.models import TenantSecret
    from kindstride.tenancy.services import create_tenant, load_secret, store_secret

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = make_app(SECRETS_KEY=old)
    with app.app_context():
        ids = {slug: create_tenant(slug, slug.title(), "en", "USD", "UTC").id for slug in ("alpha", "beta")}
        user_id = make_user(ids["beta"], "binh@example.com")
        for slug, tenant_id in ids.items():
            with tenant_scope(tenant_id):
                store_secret("oidc_client_secret", f"secret of {slug}")
                db.session.commit()
        with tenant_scope(ids["beta"]):
            box = app.extensions["kindstride.secrets"]
            db.session.add(StravaConnection(user_id=user_id, athlete_id="42", access_token=box.encrypt("access"),
                                            refresh_token=box.encrypt("refresh")))
            db.session.commit()

    both = make_app(SECRETS_KEY=f"{new},{old}")
    with both.app_context():  # the command runs in the current app context (the fixture's otherwise)
        result = both.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["alpha: 1 secret(s) re-encrypted", "beta: 3 secret(s) re-encrypted"]

    only_new = make_app(SECRETS_KEY=new)
    with only_new.app_context():
        box = only_new.extensions["kindstride.secrets"]
        for slug, tenant_id in ids.items():
            with tenant_scope(tenant_id):
                assert load_secret("oidc_client_secret") == f"secret of {slug}"
        with tenant_scope(ids["beta"]):
            connection = db.session.scalar(sa.select(StravaConnection))
            assert box.decrypt(connection.access_token) == "access"
            assert box.decrypt(connection.refresh_token) == "refresh"
            # A ciphertext no key can read: that tenant is named, the others are still done.
            secret = db.session.scalar(sa.select(TenantSecret))
            secret.ciphertext = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
            db.session.commit()
    with only_new.app_context():
        failed = only_new.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert failed.exit_code != 0
    assert "alpha: 1 secret(s) re-encrypted" in failed.output
    assert "beta: not rotated: tenant_secrets id" in failed.output and "1 tenant(s) not rotated (beta)" in failed.output
