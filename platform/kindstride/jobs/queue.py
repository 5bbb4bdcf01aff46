import logging
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


def job_path(func) -> str:
    return f"{func.__module__}:{func.__qualname__}"


def enqueue(func, *args, queue="default"):
    """Queue func(*args) for the current tenant, to run after the current transaction commits."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    request = {"path": job_path(func), "tenant_id": current_tenant_id(), "args": list(args), "queue": queue}
    session = db.session()
    if session.in_transaction():
        session.info.setdefault(_PENDING, []).append((current_app._get_current_object(), request))
    else:
        _dispatch(current_app._get_current_object(), request)


@event.listens_for(Session, "after_commit")
def _dispatch_after_commit(session):
    if session.in_nested_transaction():
        return  # a SAVEPOINT released: the work is not committed until the outer transaction is
    for app, request in session.info.pop(_PENDING, []):
        _dispatch(app, request)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session):
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)


def redis_connection(app=None) -> Redis:
    app = app or current_app
    return app.extensions["kindstride.redis"]


def _dispatch(app, request):
    if app.config["REDIS_URL"]:
        tenant = request["tenant_id"]
        try:
            Queue(request["queue"], connection=redis_connection(app)).enqueue(
                "kindstride.jobs.runner.run_job",
                request["path"], tenant, request["args"],
                job_id=f"tenant-{tenant if tenant is not None else 'platform'}-{uuid.uuid4().hex}",
                meta={"tenant_id": tenant, "job": request["path"]},
                retry=Retry(max=len(RETRY_BACKOFF), interval=RETRY_BACKOFF),
                job_timeout=JOB_TIMEOUT,
                description=f"{request['path']} for tenant {tenant}",
            )
            return
        except RedisError as error:
            # The transaction that asked for the job is committed already: with Redis unreachable, the job runs
            # here and now (jobs are idempotent) instead of being lost, as it does without Redis at all.
            log.warning("Redis unreachable (%s): job %s for tenant %s runs in-process", type(error).__name__,
                        request["path"], tenant)
    from kindstride.jobs.runner import run_in_app

    try:
        run_in_app(app, request["path"], request["tenant_id"], request["args"])
    except Exception:
        # In-process jobs have no queue to retry from; the failure is logged like a failed rq job.
        log.exception("job %s for tenant %s failed", request["path"], request["tenant_id"])
