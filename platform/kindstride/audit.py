"""The audit log: who did what to which record, for moderation, admin and money actions."""

import sqlalchemy as sa
from flask import g, has_request_context
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow


class AuditEntry(TenantOwned, db.Model):
    __tablename__ = "audit_log"
    tenant_refs = {"actor_id": "users"}
    extra_table_args = (sa.Index("ix_audit_log_subject", "tenant_id", "subject_type", "subject_id"),)

    actor_id: Mapped[int | None] = mapped_column(BigId)
    action: Mapped[str] = mapped_column(sa.String(60))
    subject_type: Mapped[str] = mapped_column(sa.String(40))
    subject_id: Mapped[int | None] = mapped_column(BigId)
    details: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


def record(action, subject_type, subject_id, **details):
    actor = g.get("user") if has_request_context() else None
    db.session.add(AuditEntry(actor_id=actor.id if actor else None, action=action, subject_type=subject_type,
                              subject_id=subject_id, details=details))
