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
