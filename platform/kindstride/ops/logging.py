"""Structured logs: every line carries the request id and the tenant (KINDSTRIDE_LOG_FORMAT=json|text).

The request id comes from the caller's X-Request-ID header when it is a plain token (a load balancer or
nginx usually sets one), or is made here; it is echoed in the response (kindstride.ops.health). The tenant
is the site's slug for requests and the tenant id of the scope for jobs and commands; rq job ids are added
inside workers. Nothing here reads the database.
"""

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from flask.logging import default_handler

from kindstride.config import ConfigError
from kindstride.tenancy.scope import current_tenant_id

FORMATS = ("json", "text")
TEXT_FORMAT = ("%(asctime)s %(levelname)s %(name)s [tenant=%(tenant)s/%(tenant_id)s request=%(request_id)s "
               "job=%(job_id)s]: %(message)s")
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

# One-time credentials travel in a few URLs (confirmation and password-reset links, OAuth codes and states):
# an access log, which many people and systems read, must never hold one.
SECRET_PATH = re.compile(r"(/(?:confirm|password/reset)/)[^/?#\s\"]+")
SECRET_QUERY = re.compile(r"((?:^|[?&])(?:code|state|token|access_token|refresh_token)=)[^&#\s\"]*", re.IGNORECASE)


def redact_url(text):
    """The URL (or request line) with the one-time credentials in it replaced by [redacted]."""
    if not text:
        return text
    return SECRET_QUERY.sub(r"\1[redacted]", SECRET_PATH.sub(r"\1[redacted]", text))


request_id_var: ContextVar[str | None] = ContextVar("kindstride_request_id", default=None)
tenant_slug_var: ContextVar[str | None] = ContextVar("kindstride_tenant_slug", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_CONTEXT_FIELDS = ("request_id", "tenant", "tenant_id", "job_id")


def request_id_from(header_value: str | None) -> str:
    """The caller's request id when it is a plain token of at most 128 characters, else a new one."""
    if header_value and _REQUEST_ID.match(header_value):
        return header_value
    return uuid.uuid4().hex


def _current_job_id():
    if "rq" not in sys.modules:
        return None
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # (outside a worker there is no job, and logging must never fail)
        return None
    return job.id if job is not None else None


class ContextFilter(logging.Filter):
    """Adds request_id, tenant, tenant_id and job_id to every record (None where there is none)."""

    def filter(self, record):
        record.request_id = request_id_var.get()
        record.tenant_id = current_tenant_id()
        record.tenant = tenant_slug_var.get()
        record.job_id = _current_job_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the context fields, extras and the traceback."""

    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for field in _CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _CONTEXT_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record):
        record = logging.makeLogRecord(vars(record))  # a copy: other handlers see the record unchanged
        for field in _CONTEXT_FIELDS:
            if getattr(record, field, None) is None:
                setattr(record, field, "-")
        return super().format(record)


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ConfigError(f"KINDSTRIDE_LOG_FORMAT must be json or text, not {log_format!r}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(app):
    """One handler on the root logger (stderr) with the chosen format; replaces a plain basicConfig one."""
    formatter = formatter_for(app.config["LOG_FORMAT"])
    level = str(app.config["LOG_LEVEL"]).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"KINDSTRIDE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "kindstride", False)), None)
    if handler is None:
        for other in list(root.handlers):
            if type(other) is logging.StreamHandler:  # logging.basicConfig's, from init_logging
                root.removeHandler(other)
        handler = logging.StreamHandler(sys.stderr)
        handler.kindstride = True
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(formatter)
    root.setLevel(level)
    app.logger.removeHandler(default_handler)  # records reach the root handler; no second, unformatted copy
