"""How far a long job has got (say, judging every activity of a challenge again after a ruleset change),
for an admin page to show as a progress bar.

A record per tenant and operation: its state (queued, running, done, failed), how many of how many items are
done, and a number telling runs apart (the ruleset version). It lives in Redis beside the rq queue, under a
key that carries the tenant, because the job writes it from inside its own open transaction, which no page
could see before the commit. Without Redis the jobs run in-process, inside the request that queued them, so
a record in this process's memory is enough.

"done" is written only once the job's transaction is committed, and "failed" when it is rolled back (rq then
retries the job, which starts the record again): the bar never says finished before the results are there.
"""

import json
import threading
import time

from flask import current_app
from redis import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.tenancy.scope import current_tenant_id

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ACTIVE = (QUEUED, RUNNING)
TTL_S = 24 * 3600  # a record outlives its job by a day, then the page shows no bar
WRITE_EVERY_S = 0.5  # at most two writes a second while a job counts
_TRACKED = "kindstride.progress_tracked"
_memory: dict[str, dict] = {}
_memory_lock = threading.Lock()


def key(operation, ref, tenant_id=None):
    tenant = tenant_id if tenant_id is not None else current_tenant_id()
    return f"kindstride:progress:tenant-{tenant}:{operation}:{ref}"


def _redis(app=None):
    app = app or current_app
    if not app.config.get("REDIS_URL"):
        return None
    return app.extensions.get("kindstride.redis")


def _write(name, record, app=None):
    record = {**record, "updated_at": time.time()}
    redis = _redis(app)
    if redis is not None:
        try:
            redis.set(name, json.dumps(record), ex=TTL_S)
            return
        except RedisError:
            pass  # progress is a courtesy: the job goes on without it
    with _memory_lock:
        _memory[name] = record


def read(operation, ref):
    """The record of an operation of the current tenant, or None."""
    name = key(operation, ref)
    redis = _redis()
    if redis is not None:
        try:
            raw = redis.get(name)
            return json.loads(raw) if raw else None
        except (RedisError, ValueError):
            return None
    with _memory_lock:
        record = _memory.get(name)
        return dict(record) if record else None


def queued(operation, ref, run):
    """The operation's job is asked for (call it before the transaction that queues it commits)."""
    _write(key(operation, ref), {"state": QUEUED, "run": run, "done": 0, "total": 0})


class Tracker:
    """Counts a job's items; the record says done after the job's transaction commits, failed if it is
    rolled back."""

    def __init__(self, session, operation, ref, run, total):
        self.name = key(operation, ref)
        self.app = current_app._get_current_object()  # the commit hook may run outside this app context
        self.run, self.total, self.done, self._written = run, total, 0, 0.0
        _write(self.name, {"state": RUNNING, "run": run, "done": 0, "total": total})
        session.info.setdefault(_TRACKED, []).append(self)

    def step(self, count=1):
        self.done += count
        now = time.monotonic()
        if now - self._written >= WRITE_EVERY_S:
            self._written = now
            _write(self.name, {"state": RUNNING, "run": self.run, "done": self.done, "total": self.total}, self.app)

    def finish(self, state):
        _write(self.name, {"state": state, "run": self.run, "done": self.done if state == FAILED else self.total,
                           "total": self.total}, self.app)


def track(session, operation, ref, run, total) -> Tracker:
    return Tracker(session, operation, ref, run, total)


@event.listens_for(Session, "after_commit")
def _finish_after_commit(session):
    if session.in_nested_transaction():
        return
    for tracker in session.info.pop(_TRACKED, []):
        tracker.finish(DONE)


@event.listens_for(Session, "after_rollback")
def _fail_after_rollback(session):
    if session.in_nested_transaction():
        return
    for tracker in session.info.pop(_TRACKED, []):
        tracker.finish(FAILED)
