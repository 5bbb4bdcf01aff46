"""/healthz, /readyz and /metrics on any host, and the request id, counted and echoed for every request.

`OpsMiddleware` wraps the Flask app's WSGI callable, so these three paths answer before any tenant code
runs: load balancers and Kubernetes probe by IP address, with no tenant's Host header, and a probe must
not depend on the tenant tables it would read to resolve one.

- /healthz: the process is alive. 200 always; touches neither the database nor Redis.
- /readyz: this instance can serve: the database answers, Redis answers (when KINDSTRIDE_REDIS_URL is
  set) and the database schema is at the head of migrations/ (or ahead of it: a newer release migrated
  first and this one still serves during the rolling update). 200, or 503 with a JSON body naming each
  problem. Take an instance out of the load balancer on 503; never restart it for that (use /healthz).
- /metrics: Prometheus (kindstride.ops.metrics).
"""

import contextlib
import json
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from kindstride.ops.logging import REQUEST_ID_HEADER, request_id_from, request_id_var, tenant_slug_var
from kindstride.ops.metrics import EXTENSION as METRICS
from kindstride.ops.metrics import metrics_response
from kindstride.ops.redis import ops_redis

HEALTH, READY, METRICS_PATH = "/healthz", "/readyz", "/metrics"
ENDPOINT_KEY, TENANT_KEY, REQUEST_ID_KEY = "kindstride.endpoint", "kindstride.tenant", "kindstride.request_id"
_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


@dataclass
class Readiness:
    checks: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def ready(self):
        return not self.problems

    def as_json(self):
        return {"status": "ready" if self.ready else "unready", "checks": self.checks, "problems": self.problems}


def _short(error) -> str:
    """An exception as one line, without the connection URL's secrets (drivers name host and port only)."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _script_directory(app):
    """migrations/ as alembic sees it (None when the folder is not there), read once per app."""
    key = "kindstride.ops.migrations"
    if key not in app.extensions:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        try:
            config = Config()
            config.set_main_option("script_location", app.extensions["migrate"].directory)
            app.extensions[key] = ScriptDirectory.from_config(config)
        except Exception:  # (reported by check_readiness)
            app.extensions[key] = None
    return app.extensions[key]


def migration_state(app, applied: set[str]) -> tuple[str, str | None]:
    """("ok" | "ahead" | "behind" | "missing", problem). The database may be ahead of this code: during a
    rolling update migrations run first (expand/contract), and the previous release keeps serving."""
    script = _script_directory(app)
    if script is None:
        return "missing", "migrations: the migrations folder is missing from this installation"
    heads = set(script.get_heads())
    if applied == heads:
        return "ok", None
    known = set()
    for revision in applied:
        with contextlib.suppress(Exception):  # alembic raises for a revision this code does not have
            if script.get_revision(revision) is not None:
                known.add(revision)
    if applied and not known:
        return "ahead", None  # migrated by a newer release than this one
    return "behind", (f"migrations: the database is at {', '.join(sorted(applied)) or 'no revision'}, this code "
                      f"needs {', '.join(sorted(heads))}: run `kindstride db upgrade`")


def check_readiness(app) -> Readiness:
    from kindstride.db import db

    result = Readiness()
    with app.app_context():
        try:
            with db.engine.connect() as connection:
                connection.execute(sa.text("select 1"))
                result.checks["database"] = "ok"
                try:
                    applied = set(connection.execute(sa.text("select version_num from alembic_version")).scalars())
                except sa.exc.DBAPIError:
                    applied = set()  # never migrated
        except Exception as error:  # (whatever it is, the instance is not ready)
            result.checks["database"] = "unreachable"
            result.problems.append(f"database: {_short(error)}")
            applied = None
        if applied is None:
            result.checks["migrations"] = "unknown"
        else:
            result.checks["migrations"], problem = migration_state(app, applied)
            if problem:
                result.problems.append(problem)
    redis = ops_redis(app)
    if redis is None:
        result.checks["redis"] = "not configured"
    else:
        try:
            redis.ping()
            result.checks["redis"] = "ok"
        except Exception as error:
            result.checks["redis"] = "unreachable"
            result.problems.append(f"redis: {_short(error)}")
    return result


class OpsMiddleware:
    """In front of the Flask app: the three ops endpoints, X-Request-ID in and out, request metrics."""

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_KEY] = request_id
        id_token = request_id_var.set(request_id)
        tenant_token = tenant_slug_var.set(None)
        try:
            path = environ.get("PATH_INFO") or "/"
            if path in (HEALTH, READY, METRICS_PATH):
                return self._ops_endpoint(path, environ, start_response, request_id)
            return self._counted(environ, start_response, request_id)
        finally:
            tenant_slug_var.reset(tenant_token)
            request_id_var.reset(id_token)

    def _ops_endpoint(self, path, environ, start_response, request_id):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, headers, body = "405 Method Not Allowed", [*_JSON, ("Allow", "GET, HEAD")], b'{"error": "GET"}'
        elif path == HEALTH:
            status, headers, body = "200 OK", _JSON, b'{"status": "alive"}'
        elif path == READY:
            readiness = check_readiness(self.app)
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            headers, body = _JSON, json.dumps(readiness.as_json()).encode()
        else:
            status, headers, body = metrics_response(self.app, environ)
        environ[ENDPOINT_KEY] = f"ops.{path.strip('/')}"
        start_response(status, [*headers, ("Content-Length", str(len(body))), (REQUEST_ID_HEADER, request_id)])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _counted(self, environ, start_response, request_id):
        started = time.perf_counter()
        answered = {}

        def start(status, headers, exc_info=None):
            answered["status"] = status.split(" ", 1)[0]
            headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, start)
        finally:
            metrics = self.app.extensions.get(METRICS)
            if metrics is not None:
                metrics.observe_request(environ.get(ENDPOINT_KEY), environ.get("REQUEST_METHOD", "GET"),
                                        answered.get("status", "500"), time.perf_counter() - started)


def note_tenant():
    """before_request, right after site resolution: the tenant's slug for logs and the access log."""
    from flask import g, request

    tenant = g.get("tenant")
    if tenant is not None:
        tenant_slug_var.set(tenant.slug)
        request.environ[TENANT_KEY] = tenant.slug


def note_endpoint(_exception=None):
    """teardown_request: the matched endpoint (a bounded label for metrics), also for 404s and errors."""
    from flask import request

    rule = request.url_rule
    request.environ[ENDPOINT_KEY] = rule.endpoint if rule is not None else None


def init_health(app):
    from kindstride.web.sites import resolve_site

    funcs = app.before_request_funcs.setdefault(None, [])
    funcs.insert(funcs.index(resolve_site) + 1 if resolve_site in funcs else len(funcs), note_tenant)
    app.teardown_request(note_endpoint)
    app.wsgi_app = OpsMiddleware(app, app.wsgi_app)
