"""How far a long job has got (judging every activity of a challenge again after a ruleset change, importing
a zip of activity files), for a page to show as a progress bar.

A record per tenant and operation: its state (queued, running, done, failed), how many of how many items are
done, a number telling runs apart (the ruleset version), the fields the job's page needs (say, who may see
it), and optionally one result per item, in order. It lives in Redis beside the rq queue, under a key that
carries the tenant, because the job writes it from inside its own open transaction, which no page could see
before the commit. Without Redis the jobs run in-process, inside the request that queued them, so a record in
this process's memory is enough.

A job done in one transaction (the re-evaluation) gets "done" only once that transaction is committed, and
"failed" when it is rolled back (rq then retries the job, which starts the record again): the bar never says
finished before the results are there. A job that commits item by item (an upload, each file on its own)
tracks with `until_commit=False`: it adds each item's result once that item is committed, and says `finish()`
itself; the results so far tell a retried job where to go on.
"""

import json
import threading
import time

from flask import current_app, jsonify
from flask_babel import format_decimal
from redis import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.jobs.queue import redis_or_none
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


def _write(name, record, app=None, *, new=False):
    """Write the record; `new` starts its item results afresh."""
    record = {**record, "updated_at": time.time()}
    redis = redis_or_none(app)
    if redis is not None:
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.set(name, json.dumps(record), ex=TTL_S)
            if new:
                pipe.delete(f"{name}:items")
            pipe.execute()
            return
        except RedisError:
            pass  # progress is a courtesy: the job goes on without it
    with _memory_lock:
        _memory[name] = {**record, "items": [] if new else _memory.get(name, {}).get("items", [])}


def _append(name, item, app=None):
    """One more item result, after the others (a Redis list beside the record: a push, not a rewrite)."""
    redis = redis_or_none(app)
    if redis is not None:
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.rpush(f"{name}:items", json.dumps(item))
            pipe.expire(f"{name}:items", TTL_S)
            pipe.execute()
            return
        except RedisError:
            pass
    with _memory_lock:
        _memory.setdefault(name, {}).setdefault("items", []).append(item)


def read(operation, ref):
    """The record of an operation of the current tenant, or None; its item results under "items"."""
    name = key(operation, ref)
    redis = redis_or_none()
    record = None
    if redis is not None:
        try:
            raw, items = redis.pipeline(transaction=False).get(name).lrange(f"{name}:items", 0, -1).execute()
            record = {**json.loads(raw), "items": [json.loads(item) for item in items]} if raw else None
        except (RedisError, ValueError):
            record = None
    if record is None:  # no Redis, or it was unreachable when the record was written
        with _memory_lock:
            found = _memory.get(name)
            record = {**found, "items": list(found.get("items", []))} if found and "state" in found else None
    if record is not None and record["items"]:
        record["done"] = max(int(record.get("done") or 0), len(record["items"]))
    return record


def queued(operation, ref, run, **fields):
    """The operation's job is asked for (call it before the transaction that queues it commits). `fields` are
    kept with the record for its page (say, whose job it is)."""
    _write(key(operation, ref), {"state": QUEUED, "run": run, "done": 0, "total": 0, **fields}, new=True)


class Tracker:
    """Counts a job's items. With until_commit (a job done in one transaction), the record says done after
    the job's transaction commits, failed if it is rolled back; without, the job adds each committed item's
    result with step(result=...) and calls finish() itself."""

    def __init__(self, session, operation, ref, run, total, *, until_commit=True, done=0, **fields):
        self.name = key(operation, ref)
        self.app = current_app._get_current_object()  # the commit hook may run outside this app context
        self.run, self.total, self.done, self.fields, self._written = run, total, done, fields, 0.0
        self._write(RUNNING)
        if until_commit:
            session.info.setdefault(_TRACKED, []).append(self)

    def _write(self, state):
        _write(self.name, {"state": state, "run": self.run, "done": self.done, "total": self.total, **self.fields},
               self.app)

    def step(self, count=1, result=None):
        self.done += count
        if result is not None:
            _append(self.name, result, self.app)
        now = time.monotonic()
        if now - self._written >= WRITE_EVERY_S:
            self._written = now
            self._write(RUNNING)

    def finish(self, state=DONE):
        if state != FAILED:
            self.done = self.total
        self._write(state)


def track(session, operation, ref, run, total, **options) -> Tracker:
    return Tracker(session, operation, ref, run, total, **options)


def status(record, texts):
    """What a page and kindstride-progress.js show of a record: {state, done, total, active, percent, text},
    the text by state from `texts`."""
    if record is None:
        return {"state": None, "done": 0, "total": 0, "active": False, "percent": "0", "text": ""}
    state, done, total = record["state"], int(record.get("done") or 0), int(record.get("total") or 0)
    percent = done / total * 100 if total else (100 if state == DONE else 0)
    return {"state": state, "done": done, "total": total, "active": state in ACTIVE,
            "percent": format_decimal(percent, format="#,##0"), "text": texts.get(state, "")}


def status_response(status_):
    """The status as JSON for kindstride-progress.js; never cached, it changes every second."""
    response = jsonify(status_)
    response.cache_control.no_store = True
    return response


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
