"""Periodic work, run by `kindstride cron` through rq's CronScheduler.

Each entry runs on the platform and fans out one tenant job per tenant, so every job still runs in
exactly one tenant scope.
"""

import sqlalchemy as sa

from kindstride.accounts.maintenance import purge_spent_account_tokens
from kindstride.challenges.lifecycle import close_finished_challenges
from kindstride.db import db
from kindstride.jobs.queue import enqueue
from kindstride.tenancy.models import ACTIVE, Tenant
from kindstride.tenancy.scope import tenant_scope

# (tenant job, interval in seconds)
SCHEDULE = [
    (purge_spent_account_tokens, 3600),
    (close_finished_challenges, 900),
]


def fan_out(path):
    """Queue the tenant job at `path` once for every active tenant."""
    from kindstride.jobs.runner import resolve

    func = resolve(path)
    for tenant_id in db.session.scalars(sa.select(Tenant.id).where(Tenant.status == ACTIVE)):
        with tenant_scope(tenant_id):
            enqueue(func, queue="low")
