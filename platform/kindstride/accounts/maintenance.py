from datetime import timedelta

import sqlalchemy as sa

from kindstride.accounts.models import AccountToken
from kindstride.db import db, utcnow

KEEP_SPENT_TOKENS = timedelta(days=7)


def purge_spent_account_tokens():
    """Delete emailed tokens that expired or were used over a week ago (a tenant job)."""
    cutoff = utcnow() - KEEP_SPENT_TOKENS
    db.session.execute(
        sa.delete(AccountToken).where(sa.or_(AccountToken.expires_at < cutoff, AccountToken.used_at < cutoff))
    )
