"""`kindstride web`: the app under gunicorn, configured by deploy/gunicorn.conf.py; and gunicorn's logger.

The command replaces itself with `python -m gunicorn -c <config> kindstride.app:create_app()` (exec, not a
child), so in a container gunicorn is PID 1's direct successor and gets SIGTERM from the orchestrator.
A fresh interpreter also matters for metrics: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before
prometheus_client is first imported, which this process has done already.
"""

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from gunicorn.glogging import Logger as GunicornBaseLogger

from kindstride.config import ENV_VARIABLES, REPO_ROOT
from kindstride.ops.logging import redact_url

DEFAULT_CONFIG = REPO_ROOT / "deploy" / "gunicorn.conf.py"
APP_SPEC = "kindstride.app:create_app()"


def gunicorn_argv(config_path, extra_args=()):
    return [sys.executable, "-m", "gunicorn", "--config", str(config_path), *extra_args, APP_SPEC]


@click.command("web", context_settings={"ignore_unknown_options": True})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
              show_default=True, help="gunicorn configuration file.")
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def web_command(config_path, gunicorn_args):
    """Serve the app with gunicorn (address, workers, threads, timeout: see deploy/gunicorn.conf.py).

    Extra arguments go to gunicorn as they are (e.g. `kindstride web --log-level debug`).
    """
    if not config_path.is_file():
        raise click.ClickException(f"gunicorn configuration {config_path} not found (use --config)")
    argv = gunicorn_argv(config_path.resolve(), gunicorn_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # noqa: S606 (no shell: gunicorn replaces this process)


def dispose_inherited_connections(app):
    """In a forked child: forget the parent's pooled database connections without closing them (closing
    would end the parent's sessions; the child opens its own on first use)."""
    from kindstride.db import db

    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)


def _log_format():
    name = "KINDSTRIDE_LOG_FORMAT"
    return os.environ.get(name) or ENV_VARIABLES[name][1]


REDACTED_ATOMS = ("r", "U", "q", "f")  # request line, path, query string, referer


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger, in the format of KINDSTRIDE_LOG_FORMAT. The JSON access line carries the request
    id the app echoed and the tenant it resolved, so it joins with the app's own log lines."""

    def setup(self, cfg):
        super().setup(cfg)
        if _log_format() == "json":
            from kindstride.ops.logging import JsonFormatter

            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in REDACTED_ATOMS:
            atoms[name] = redact_url(atoms[name])
        return atoms

    def access(self, resp, req, environ, request_time):
        if _log_format() != "json":
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = {name.lower(): value for name, value in resp.headers}
        entry = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "gunicorn.access",
            "message": f"{environ.get('REQUEST_METHOD')} {redact_url(environ.get('PATH_INFO'))} {status}",
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": redact_url(environ.get("PATH_INFO")),
            "query": redact_url(environ.get("QUERY_STRING")) or None,
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "host": environ.get("HTTP_HOST"),
            "tenant": environ.get("kindstride.tenant"),
            "endpoint": environ.get("kindstride.endpoint"),
            "request_id": headers.get("x-request-id"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "referer": redact_url(environ.get("HTTP_REFERER")),
            "pid": os.getpid(),
        }
        try:
            self.access_log.info(json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False))
        except Exception:  # (gunicorn's own access() does the same)
            self.exception("could not write the access log")
        return None
