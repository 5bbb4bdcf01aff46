"""Prometheus metrics at /metrics.

Three kinds of figures, and where each is kept:

- Requests (count and latency by endpoint, method and status): in the web process that served them, with
  prometheus_client. gunicorn runs several worker processes, so deploy/gunicorn.conf.py turns on
  prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) and /metrics adds up every worker's
  figures for that web instance. Prometheus sums over instances.
- Ingest and webhook outcomes (activities created by source, gateway notifications by outcome): counted
  when the transaction that stored the row commits, whichever process that is (a web request, an rq work
  horse importing from Strava), in Redis hashes, so the count is platform-wide. Without Redis they are
  kept in the process. Every web instance reports the same platform-wide value: aggregate with max().
- Queues (waiting, started, scheduled and failed jobs per rq queue, workers): read from Redis at scrape
  time, also platform-wide.

No metric has a tenant label: tenants are unbounded, and endpoint x status x tenant would multiply the
series of every instance by the number of tenants. Per-tenant figures come from the database (activities,
the ledger) and from the logs, which carry the tenant on every line.
"""

import hmac
import logging
import os
import threading
from collections import Counter as Tally

from flask import current_app, has_app_context
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from kindstride.ops.redis import ops_redis

log = logging.getLogger(__name__)

EXTENSION = "kindstride.ops.metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REDIS_KEYS = {  # platform-wide counters: hash field -> count
    "activities_created": "kindstride:platform:metrics:activities_created",
    "webhook_deliveries": "kindstride:platform:metrics:webhook_deliveries",
}
_PENDING = "kindstride.ops.pending_counts"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """One app's metrics. Request metrics are prometheus_client objects (registered in this app's own
    registry, or written to the multiprocess directory); the rest is read when /metrics is scraped."""

    def __init__(self, app):
        self.app = app
        self.multiprocess = multiprocess_mode()
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.requests = Counter("kindstride_http_requests", "HTTP requests answered, by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("kindstride_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["endpoint", "method"], registry=self.registry)
        self._local_counts = {name: Tally() for name in REDIS_KEYS}
        self._lock = threading.Lock()
        if self.registry is not None:
            self.registry.register(PlatformCollector(self))

    # -- requests --------------------------------------------------------------------------------------
    def observe_request(self, endpoint, method, status, seconds):
        endpoint = endpoint or "unmatched"
        self.requests.labels(endpoint, method, status).inc()
        self.latency.labels(endpoint, method).observe(seconds)

    # -- platform-wide counters ------------------------------------------------------------------------
    def _redis(self):
        return ops_redis(self.app)

    def count(self, name, field, amount=1):
        redis = self._redis()
        if redis is None:
            with self._lock:
                self._local_counts[name][field] += amount
            return
        try:
            redis.hincrby(REDIS_KEYS[name], field, amount)
        except Exception:  # (a metric must never fail the work it counts)
            log.warning("could not count %s %s in Redis", name, field, exc_info=True)

    def counts(self, name) -> dict:
        redis = self._redis()
        if redis is None:
            with self._lock:
                return dict(self._local_counts[name])
        return {key.decode(): int(value) for key, value in redis.hgetall(REDIS_KEYS[name]).items()}

    # -- exposition ------------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(PlatformCollector(self))
        return generate_latest(registry)


class PlatformCollector:
    """Figures read at scrape time: platform-wide counters and rq's queues."""

    def __init__(self, metrics):
        self.metrics = metrics

    def collect(self):
        redis = self.metrics._redis()
        up = GaugeMetricFamily("kindstride_redis_up", "1 when Redis answered this scrape (0 down, absent unset)")
        try:
            activities = CounterMetricFamily("kindstride_activities_created", "Activities stored, by source "
                                             "(platform-wide)", labels=["source"])
            for source, count in sorted(self.metrics.counts("activities_created").items()):
                activities.add_metric([source], count)
            webhooks = CounterMetricFamily("kindstride_webhook_deliveries", "Gateway notifications handled, by "
                                           "gateway and outcome (platform-wide)", labels=["gateway", "outcome"])
            for field, count in sorted(self.metrics.counts("webhook_deliveries").items()):
                gateway, _, outcome = field.partition("|")
                webhooks.add_metric([gateway, outcome], count)
            queue_families = list(_queue_families(redis)) if redis is not None else []
        except Exception:  # (Redis down: say so, and still serve the request metrics)
            log.warning("Redis did not answer the metrics scrape", exc_info=True)
            if redis is not None:
                up.add_metric([], 0)
                yield up
            return
        if redis is not None:
            up.add_metric([], 1)
            yield up
        yield activities
        yield webhooks
        yield from queue_families


def _queue_families(redis):
    from rq import Queue, Worker
    from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    from kindstride.jobs.queue import QUEUES

    waiting = GaugeMetricFamily("kindstride_queue_jobs", "Jobs waiting in an rq queue", labels=["queue"])
    registries = {
        "started": (StartedJobRegistry, "Jobs being worked on"),
        "scheduled": (ScheduledJobRegistry, "Jobs scheduled for later (retries wait here)"),
        "deferred": (DeferredJobRegistry, "Jobs waiting for another job"),
        "failed": (FailedJobRegistry, "Jobs that failed for good (after their retries)"),
    }
    families = {state: GaugeMetricFamily(f"kindstride_queue_{state}_jobs", text, labels=["queue"])
                for state, (_cls, text) in registries.items()}
    pipeline = redis.pipeline(transaction=False)
    for name in QUEUES:
        queue = Queue(name, connection=redis)
        pipeline.llen(queue.key)
        for cls, _text in registries.values():
            # ZCARD, not registry.count: a scrape must not run rq's clean-up, which moves jobs around.
            pipeline.zcard(cls(name, connection=redis).key)
    answers = iter(pipeline.execute())
    for name in QUEUES:
        waiting.add_metric([name], next(answers))
        for state in registries:
            families[state].add_metric([name], next(answers))
    workers = GaugeMetricFamily("kindstride_rq_workers", "rq workers alive")
    workers.add_metric([], Worker.count(connection=redis))
    return [waiting, *families.values(), workers]


def metrics_response(app, environ):
    """(status, headers, body) of /metrics, asking for the bearer token when KINDSTRIDE_METRICS_TOKEN is set."""
    token = app.config.get("METRICS_TOKEN")
    if token:
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return "401 Unauthorized", [("Content-Type", "application/json"),
                                        ("WWW-Authenticate", 'Bearer realm="metrics"')], \
                b'{"error": "/metrics needs the bearer token of KINDSTRIDE_METRICS_TOKEN"}'
    body = app.extensions[EXTENSION].exposition()
    return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST)], body


# -- counting committed rows ------------------------------------------------------------------------------
# Mapper events are global; each committed row is counted in the metrics of the app whose session stored it.

def _remember(session, name, field, amount=1):
    if session is None or not has_app_context():
        return
    metrics = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        session.info.setdefault(_PENDING, []).append((metrics, name, field, amount))


def count_after_commit(name, field, amount=1):
    """For code that stores rows without the ORM (bulk imports with INSERT ... SELECT): count them in the
    platform-wide counter `name` ("activities_created" by source, "webhook_deliveries" by
    "gateway|outcome") once the current transaction commits (at once outside a transaction)."""
    from kindstride.db import db

    if name not in REDIS_KEYS:
        raise ValueError(f"unknown counter {name!r}")
    session = db.session()
    if session.in_transaction():
        _remember(session, name, field, amount)
    else:
        current_app.extensions[EXTENSION].count(name, field, amount)  # nothing left to commit


def _activity_inserted(_mapper, _connection, target):
    _remember(object_session(target), "activities_created", target.source or "unknown")


def _webhook_inserted(_mapper, _connection, target):
    _remember(object_session(target), "webhook_deliveries", f"{target.gateway}|{target.outcome}")


def _count_after_commit(session):
    if session.in_nested_transaction():
        return
    for metrics, name, field, amount in session.info.pop(_PENDING, []):
        metrics.count(name, field, amount)


def _forget_after_rollback(session):
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)


def listen_for_rows():
    from kindstride.activities.models import Activity
    from kindstride.payments.models import WebhookDelivery

    for target, name, func in ((Activity, "after_insert", _activity_inserted),
                               (WebhookDelivery, "after_insert", _webhook_inserted),
                               (Session, "after_commit", _count_after_commit),
                               (Session, "after_rollback", _forget_after_rollback)):
        if not event.contains(target, name, func):
            event.listen(target, name, func)


def init_metrics(app):
    app.extensions[EXTENSION] = Metrics(app)
    listen_for_rows()
