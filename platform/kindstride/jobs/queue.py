"""Queueing jobs for after the commit, on rq (or in-process without Redis).

A job function with a `batch` attribute (evaluate_activity: its `batch` is evaluate_activities) is not queued as
one rq job per call: its arguments go on a per-tenant Redis list, and one *drain* job at a time is scheduled for
it (a flag key, set with NX, says one is queued or running). The drain job takes everything queued, up to
BATCH_SIZE calls at a time, and runs them through the batch function in one transaction, until the list is
empty; then it clears the flag and looks once more (a call pushed just before the flag was cleared scheduled
nothing: the job takes it on if it can set the flag again). So one drain per tenant runs at a time, and under
load each batch holds everything that arrived during the one before: the cost of a batch (its queries, its
commit) is shared by more calls the busier it gets. A drain paces itself so that this holds under a steady
stream too: it starts a batch at most every DRAIN_BATCH_INTERVAL_SECONDS (unless a full batch waits), and when
the list is empty it waits up to DRAIN_LINGER_SECONDS for the next call before ending; either wait ends as soon
as another job is queued for the worker. The calls a drain job has taken are kept on a list named by its job
id until their transaction commits, so a retried job (rq's Retry, or after a crashed worker) runs them again; if a
batch fails, its calls are run one at a time and only the failing ones stay for the retry. A fork per job (rq's
default worker) is paid once per batch instead of once per activity.
"""

import json
import logging
import time
import uuid

from flask import current_app
from redis import Redis, RedisError
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.db import db
from kindstride.tenancy.scope import current_tenant_id

log = logging.getLogger(__name__)

QUEUES = ("high", "default", "low")  # a worker serves them in this order
RETRY_BACKOFF = [10, 60, 300, 900]  # seconds before each retry
JOB_TIMEOUT = 600  # hard limit for one run, in seconds
_PENDING = "kindstride.pending_jobs"
BATCH_SIZE = 200  # calls per transaction of a drain job
BATCHES_PER_JOB = 25  # then the drain job hands over to a new one (other tenants' jobs get a turn)
PROCESSING_TTL = 7 * 86400
# A drain's pace (config keys of the same names; tests set both to 0): an idle drain waits this long for more
# calls, and starts a batch at most this often, unless a full batch waits.
DRAIN_LINGER_SECONDS = 1.0
DRAIN_BATCH_INTERVAL_SECONDS = 0.25
WAIT_STEP = 0.05  # seconds between a waiting drain's looks at whether another job waits for the worker


def job_path(func) -> str:
    return f"{func.__module__}:{func.__qualname__}"


def enqueue(func, *args, queue="default"):
    """Queue func(*args) for the current tenant, to run after the current transaction commits."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    request = {"path": job_path(func), "tenant_id": current_tenant_id(), "args": list(args), "queue": queue}
    batch = getattr(func, "batch", None)
    if batch is not None:
        request["batch"] = job_path(batch)
    session = db.session()
    if session.in_transaction():
        session.info.setdefault(_PENDING, []).append((current_app._get_current_object(), request))
    else:
        _dispatch([(current_app._get_current_object(), request)])


def queued_in_transaction(func, *args):
    """Whether func(*args) is queued to be dispatched when the current transaction commits."""
    path = job_path(func)
    return any(request["path"] == path and request["args"] == list(args)
               for _app, request in db.session().info.get(_PENDING, ()))


@event.listens_for(Session, "after_commit")
def _dispatch_after_commit(session):
    if session.in_nested_transaction():
        return  # a SAVEPOINT released: the work is not committed until the outer transaction is
    _dispatch(session.info.pop(_PENDING, []))


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session):
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)


def redis_connection(app=None) -> Redis:
    app = app or current_app
    return app.extensions["kindstride.redis"]


def redis_or_none(app=None) -> Redis | None:
    """The app's Redis when it has one (then jobs run on rq workers), else None (jobs run in-process)."""
    app = app or current_app
    if not app.config.get("REDIS_URL"):
        return None
    return app.extensions.get("kindstride.redis")


def _dispatch(pending):
    """Send committed (app, request) pairs to rq; the batched calls of one commit go in one Redis round trip."""
    batched = {}
    for app, request in pending:
        if not app.config["REDIS_URL"]:
            _run_in_process(app, request)
        elif request.get("batch") and request["tenant_id"] is not None:
            batched.setdefault(app, []).append(request)
        else:
            try:
                _enqueue(app, request)
            except RedisError as error:
                _run_instead_of_queueing(app, request, error)
    for app, requests in batched.items():
        _add_to_batches(app, requests)


def _enqueue(app, request):
    tenant = request["tenant_id"]
    Queue(request["queue"], connection=redis_connection(app)).enqueue(
        "kindstride.jobs.runner.run_job",
        request["path"], tenant, request["args"],
        job_id=f"tenant-{tenant if tenant is not None else 'platform'}-{uuid.uuid4().hex}",
        meta={"tenant_id": tenant, "job": request["path"]},
        retry=Retry(max=len(RETRY_BACKOFF), interval=RETRY_BACKOFF),
        job_timeout=JOB_TIMEOUT,
        description=f"{request['path']} for tenant {tenant}",
    )


def _run_instead_of_queueing(app, request, error):
    # The transaction that asked for the job is committed already: with Redis unreachable, the job runs here and
    # now (jobs are idempotent) instead of being lost, as it does without Redis at all.
    log.warning("Redis unreachable (%s): job %s for tenant %s runs in-process", type(error).__name__,
                request["path"], request["tenant_id"])
    _run_in_process(app, request)


def _run_in_process(app, request):
    from kindstride.jobs.runner import run_in_app

    try:
        run_in_app(app, request["path"], request["tenant_id"], request["args"])
    except Exception:
        # In-process jobs have no queue to retry from; the failure is logged like a failed rq job.
        log.exception("job %s for tenant %s failed", request["path"], request["tenant_id"])


# ------------------------------------------------------------------------------------------------ batches


def _batch_key(tenant_id, batch_path):
    return f"kindstride:t{tenant_id}:batch:{batch_path}"


def _add_to_batches(app, requests):
    """Push the calls on their tenants' lists and schedule a drain for each list that has none."""
    pipe = redis_connection(app).pipeline(transaction=False)
    keys = []
    for request in requests:
        key = _batch_key(request["tenant_id"], request["batch"])
        pipe.rpush(key, json.dumps(request["args"]))
        pipe.set(f"{key}:scheduled", 1, nx=True, ex=JOB_TIMEOUT)
        keys.append(key)
    try:
        replies = pipe.execute()
    except RedisError as error:
        for request in requests:
            _run_instead_of_queueing(app, request, error)
        return
    for request, key, scheduled in zip(requests, keys, replies[1::2], strict=True):
        if scheduled:
            try:
                _schedule_drain(app, request["tenant_id"], request["batch"], request["queue"], key)
            except RedisError as error:
                _run_instead_of_queueing(app, request, error)


def _schedule_drain(app, tenant_id, batch_path, queue, key):
    try:
        Queue(queue, connection=redis_connection(app)).enqueue(
            "kindstride.jobs.runner.run_job", job_path(drain_batch), tenant_id, [batch_path, queue],
            job_id=f"tenant-{tenant_id}-{uuid.uuid4().hex}", meta={"tenant_id": tenant_id, "job": batch_path},
            retry=Retry(max=len(RETRY_BACKOFF), interval=RETRY_BACKOFF), job_timeout=JOB_TIMEOUT,
            description=f"{batch_path} (batched) for tenant {tenant_id}",
        )
    except RedisError:
        redis_connection(app).delete(f"{key}:scheduled")
        raise


# Move calls from the tenant's list to the job's processing list until it holds ARGV[1]; return what it holds.
_TAKE = """
local wanted = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[2])
if wanted > 0 then
  local items = redis.call('LRANGE', KEYS[1], 0, wanted - 1)
  if #items > 0 then
    redis.call('LTRIM', KEYS[1], #items, -1)
    redis.call('RPUSH', KEYS[2], unpack(items))
  end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return redis.call('LRANGE', KEYS[2], 0, -1)
"""


class BatchFailed(RuntimeError):
    pass


def drain_batch(batch_path, queue="default"):
    """A tenant job: run the queued calls of a batched job function (see the module's docstring)."""
    from rq import get_current_job

    from kindstride.jobs.runner import resolve
    from kindstride.tenancy.scope import require_tenant_id

    tenant_id = require_tenant_id()
    redis = redis_connection()
    key = _batch_key(tenant_id, batch_path)
    flag = f"{key}:scheduled"
    job = get_current_job()
    processing = f"{key}:processing:{job.id if job is not None else uuid.uuid4().hex}"
    func = resolve(batch_path)
    take = redis.register_script(_TAKE)
    linger = float(current_app.config.get("DRAIN_LINGER_SECONDS", DRAIN_LINGER_SECONDS))
    interval = float(current_app.config.get("DRAIN_BATCH_INTERVAL_SECONDS", DRAIN_BATCH_INTERVAL_SECONDS))
    for _ in range(BATCHES_PER_JOB):
        items = take(keys=[key, processing], args=[BATCH_SIZE, PROCESSING_TTL])
        if not items and _wait_for_call(redis, key, processing, linger):
            items = take(keys=[key, processing], args=[BATCH_SIZE, PROCESSING_TTL])
        if not items:
            redis.delete(flag)
            if not redis.llen(key) or not redis.set(flag, 1, nx=True, ex=JOB_TIMEOUT):
                return  # empty, or a newer push scheduled the next drain
            continue
        started = time.monotonic()
        _run_batch(func, [json.loads(item) for item in items], redis, processing)
        _gather_calls(redis, key, started + interval)
    # Enough for one job: a new one (the flag held for it) carries on, after other tenants' jobs had a turn.
    redis.set(flag, 1, ex=JOB_TIMEOUT)
    _schedule_drain(current_app._get_current_object(), tenant_id, batch_path, queue, key)


def _wait_for_call(redis, key, processing, linger):
    """Wait up to `linger` seconds for the next call, while no other job waits for a worker: under a steady
    stream the same drain takes it on, rather than ending and leaving the next call a new job (a fork, and
    new database and Redis connections). True once a call is on the processing list."""
    waited = 0.0
    while waited < linger and not _other_jobs_waiting(redis):
        step = min(WAIT_STEP, linger - waited)
        if redis.blmove(key, processing, step, "LEFT", "RIGHT") is not None:
            return True
        waited += step
    return False


def _gather_calls(redis, key, until):
    """Before the next batch, wait until `until` (time.monotonic) for calls to gather: a batch's fixed cost
    (its reads of memberships and rulesets, its totals, its commit) is then shared by all that arrived
    meanwhile. It starts at once when a full batch waits, or another job waits for the worker."""
    while (remaining := until - time.monotonic()) > 0:
        if redis.llen(key) >= BATCH_SIZE or _other_jobs_waiting(redis):
            return
        time.sleep(min(WAIT_STEP, remaining))


def _other_jobs_waiting(redis):
    pipe = redis.pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(Queue(name, connection=redis).key)
    return any(pipe.execute())


def batched_calls_pending(redis):
    """Calls waiting on any tenant's batch list or being run by a drain (a drain that only waits for more
    calls holds none)."""
    lists = [key for key in redis.scan_iter(match=_batch_key("*", "*")) if not key.endswith(b":scheduled")]
    return sum(redis.llen(key) for key in lists)


def _run_batch(func, calls, redis, processing):
    try:
        func(calls)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("a batch of %s calls of %s failed; running them one at a time", len(calls), job_path(func))
        failed = []
        for call in calls:
            try:
                func([call])
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("%s%s failed", job_path(func), call)
                failed.append(call)
        if failed:
            pipe = redis.pipeline()
            pipe.delete(processing)
            pipe.rpush(processing, *[json.dumps(call) for call in failed])
            pipe.expire(processing, PROCESSING_TTL)
            pipe.execute()
            raise BatchFailed(f"{len(failed)} of {len(calls)} calls of {job_path(func)} failed") from None
    redis.delete(processing)
