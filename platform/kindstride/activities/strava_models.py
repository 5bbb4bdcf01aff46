"""A person's Strava connection, and the platform table that routes Strava's webhook to its tenant."""

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow


class StravaConnection(TenantOwned, db.Model):
    """One user's authorization of the platform's Strava app; the tokens are encrypted at rest.

    A revoked connection keeps its row (who was connected, and when it ended) but loses its tokens.
    """

    __tablename__ = "strava_connections"
    tenant_refs = {"user_id": "users"}
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "user_id"),
        sa.UniqueConstraint("tenant_id", "athlete_id"),
    )

    user_id: Mapped[int] = mapped_column(BigId)
    athlete_id: Mapped[str] = mapped_column(sa.String(20))
    # Fernet ciphertexts (kindstride.crypto.secrets_box); NULL once access is revoked.
    access_token: Mapped[str | None] = mapped_column(sa.Text)
    refresh_token: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[object | None] = mapped_column(UTCDateTime)
    # The scopes the person granted, as Strava reports them ("read,activity:read_all").
    scope: Mapped[str] = mapped_column(sa.String(200), default="")
    revoked_at: Mapped[object | None] = mapped_column(UTCDateTime)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_active(self):
        return self.revoked_at is None


class StravaAthleteRoute(db.Model):
    """Which tenant a Strava athlete is connected in. A platform routing table: no tenant_id scope and no
    row-level security, because Strava's one webhook for the whole platform must find the tenant before
    any tenant data can be read. It holds ids only; a row exists while the connection is active."""

    __tablename__ = "strava_athlete_routes"

    athlete_id: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
