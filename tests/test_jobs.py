import sqlalchemy as sa

from kindstride.accounts.maintenance import purge_spent_account_tokens
from kindstride.accounts.models import AccountToken
from kindstride.accounts.services import RESET_PASSWORD, issue_account_token
from kindstride.db import db, utcnow
from kindstride.jobs import enqueue
from kindstride.jobs.periodic import fan_out
from kindstride.jobs.queue import job_path
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs


def _spent_token(tenant_id, user_id, days_ago):
    from datetime import timedelta

    from kindstride.accounts.models import User

    with tenant_scope(tenant_id):
        token = issue_account_token(db.session.get(User, user_id), RESET_PASSWORD)
        record = db.session.scalar(sa.select(AccountToken).order_by(AccountToken.id.desc()))
        record.expires_at = utcnow() - timedelta(days=days_ago)
        db.session.commit()
        return token


def _count_tokens(tenant_id):
    with tenant_scope(tenant_id):
        return db.session.scalar(sa.select(sa.func.count()).select_from(AccountToken))


def test_periodic_fan_out_runs_a_tenant_job_in_each_tenant_scope(app, tenants, make_user):
    alpha_user = make_user(tenants["alpha"], "ann@example.com")
    beta_user = make_user(tenants["beta"], "binh@example.com")
    _spent_token(tenants["alpha"], alpha_user, days_ago=30)
    _spent_token(tenants["alpha"], alpha_user, days_ago=0)
    _spent_token(tenants["beta"], beta_user, days_ago=30)
    enqueue(fan_out, job_path(purge_spent_account_tokens))
    run_queued_jobs(app)
    run_queued_jobs(app)  # the fan-out queued one job per tenant
    assert _count_tokens(tenants["alpha"]) == 1
    assert _count_tokens(tenants["beta"]) == 0


def test_a_job_is_not_dispatched_when_its_transaction_rolls_back(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "ann@example.com")
    _spent_token(tenants["alpha"], user_id, days_ago=30)
    with tenant_scope(tenants["alpha"]):
        db.session.execute(sa.select(1))  # open a transaction
        enqueue(purge_spent_account_tokens)
        db.session.rollback()
    run_queued_jobs(app)
    assert _count_tokens(tenants["alpha"]) == 1


def test_rq_jobs_carry_the_tenant_and_retry_with_backoff(app, tenants):
    if not app.config["REDIS_URL"]:
        import pytest

        pytest.skip("needs Redis (KINDSTRIDE_REQUIRE_SERVICES=1 fails instead)")
    from rq import Queue

    from kindstride.jobs.queue import RETRY_BACKOFF, redis_connection

    with tenant_scope(tenants["beta"]):
        enqueue(purge_spent_account_tokens, queue="low")
        db.session.commit()
    job = Queue("low", connection=redis_connection()).jobs[0]
    assert job.id.startswith(f"tenant-{tenants['beta']}-")
    assert job.meta["tenant_id"] == tenants["beta"]
    assert job.retries_left == len(RETRY_BACKOFF) and job.retry_intervals == RETRY_BACKOFF
    assert job.args[1] == tenants["beta"]


BATCHES = []  # (calls, drain jobs waiting in the queue meanwhile) of each batch _record_batch ran


def _record_batch(calls):
    from rq import Queue

    from kindstride.jobs.queue import redis_connection

    BATCHES.append(([call[0] for call in calls], Queue("default", connection=redis_connection()).count))
    if len(BATCHES) == 1:
        enqueue(_batched_call, "late")  # another request's call, queued when this batch commits


def _batched_call(value):
    _record_batch([[value]])


_batched_call.batch = _record_batch


def test_one_drain_per_tenant_takes_on_the_calls_queued_while_it_runs(app, tenants):
    if not app.config["REDIS_URL"]:
        import pytest

        pytest.skip("needs Redis (KINDSTRIDE_REQUIRE_SERVICES=1 fails instead)")
    from rq import Queue

    from kindstride.jobs.queue import redis_connection

    queue = Queue("default", connection=redis_connection())
    BATCHES.clear()
    with tenant_scope(tenants["alpha"]):
        enqueue(_batched_call, "first")
        enqueue(_batched_call, "second")
        db.session.commit()
    assert queue.count == 1  # one drain job for both
    run_queued_jobs(app)
    # The call queued during the first batch went to the running drain, which scheduled no other job for it.
    assert BATCHES == [(["first", "second"], 0), (["late"], 0)]
    assert queue.count == 0
    with tenant_scope(tenants["alpha"]):
        enqueue(_batched_call, "next day")  # the drain has finished: a new one is scheduled
        db.session.commit()
    assert queue.count == 1
    run_queued_jobs(app)
    assert BATCHES[-1] == (["next day"], 0)


def _drain_with_requests(app, requests, ready):
    """Run the queued jobs (in this thread: rq's worker wants the main thread's signals) while another thread,
    once ready(redis) is true, runs each of `requests` (tenant, calls to enqueue) in a transaction of its own.
    Returns how many jobs were queued right after each request."""
    import threading
    import time

    from rq import Queue

    from kindstride.jobs.queue import redis_connection

    redis = redis_connection()
    queued = []

    def requester():
        with app.app_context():
            deadline = time.monotonic() + 30
            while not ready(redis):
                if time.monotonic() > deadline:
                    return
            for tenant, calls in requests:
                with tenant_scope(tenant):
                    for func, *args in calls:
                        enqueue(func, *args)
                    db.session.commit()
                queued.append(Queue("default", connection=redis).count)

    thread = threading.Thread(target=requester)
    thread.start()
    run_queued_jobs(app)
    thread.join(timeout=30)
    return queued


def _needs_redis(app):
    if not app.config["REDIS_URL"]:
        import pytest

        pytest.skip("needs Redis (KINDSTRIDE_REQUIRE_SERVICES=1 fails instead)")


def _first_call(tenant):
    BATCHES.clear()
    with tenant_scope(tenant):
        enqueue(_batched_call, "first")
        db.session.commit()


def test_an_idle_drain_waits_for_the_next_call_until_another_job_wants_the_worker(app, tenants):
    """Under a steady stream the same drain job takes the next call (no new job, fork and connections per
    call), and it gives the worker up as soon as another job is queued."""
    _needs_redis(app)
    app.config["DRAIN_LINGER_SECONDS"] = 60
    _first_call(tenants["alpha"])
    queued = _drain_with_requests(app, [
        (tenants["alpha"], [(_batched_call, "while it waits")]),
        (tenants["beta"], [(purge_spent_account_tokens,)]),  # another job wants the worker: the drain gives way
    ], ready=lambda redis: any(client.get("cmd") == "blmove" for client in redis.client_list()))
    assert queued[:1] == [0], "the drain ended instead of waiting for the next call"
    assert [calls for calls, _jobs_waiting in BATCHES] == [["first"], ["late"], ["while it waits"]]


def test_a_drain_gathers_the_calls_that_arrive_between_its_batches(app, tenants, monkeypatch):
    """A batch's fixed cost is shared by the calls that arrive while the drain paces its batches; a full
    batch, or another job waiting for the worker, ends the wait."""
    from kindstride.jobs import queue

    _needs_redis(app)
    monkeypatch.setattr(queue, "BATCH_SIZE", 3)
    app.config["DRAIN_BATCH_INTERVAL_SECONDS"] = 60
    _first_call(tenants["alpha"])  # its batch queues "late"; then the drain waits for a full batch
    queued = _drain_with_requests(app, [
        (tenants["alpha"], [(_batched_call, "second"), (_batched_call, "third")]),
        (tenants["alpha"], [(_batched_call, "fourth")]),
        (tenants["beta"], [(purge_spent_account_tokens,)]),
    ], ready=lambda redis: len(BATCHES) == 1)
    assert queued[:2] == [0, 0]
    assert [calls for calls, _jobs_waiting in BATCHES] == [["first"], ["late", "second", "third"], ["fourth"]]
