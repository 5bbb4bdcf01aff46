"""Closing challenges whose counting window (plus the time activities may still arrive) has passed."""

from datetime import timedelta

import sqlalchemy as sa

from kindstride import audit
from kindstride.challenges.models import CLOSED, OPEN, Challenge
from kindstride.db import db, utcnow
from kindstride.plugins import plugin_host
from kindstride.tenancy.scope import require_tenant_id

# Activities may still sync after the window ends (the usual rule is 72 hours); results stay open as long.
LATE_SYNC_GRACE = timedelta(hours=72)


def close_finished_challenges():
    """A tenant job (run by cron): close, settle pledges one last time, and tell plugins."""
    from kindstride.fundraising.services import accrue_pledges

    cutoff = utcnow() - LATE_SYNC_GRACE
    for challenge in db.session.scalars(sa.select(Challenge).where(Challenge.status == OPEN,
                                                                   Challenge.counting_end < cutoff)).all():
        accrue_pledges(challenge.id)
        challenge.status = CLOSED
        audit.record("challenge.closed", "challenge", challenge.id)
        plugin_host().manager.hook.challenge_closed(tenant_id=require_tenant_id(), challenge_id=challenge.id)
