import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow

ROLES = ("admin", "moderator", "participant", "sponsor")


class User(TenantOwned, db.Model):
    """An account on one tenant's site: the same email on two tenants is two accounts."""

    __tablename__ = "users"
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "email"),
        sa.UniqueConstraint("tenant_id", "sso_subject"),
    )

    email: Mapped[str] = mapped_column(sa.String(254))
    name: Mapped[str] = mapped_column(sa.String(200))
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    sso_subject: Mapped[str | None] = mapped_column(sa.String(255))
    email_confirmed_at: Mapped[object | None] = mapped_column(UTCDateTime)
    is_disabled: Mapped[bool] = mapped_column(default=False)
    # Bumped on password change: sessions issued before it stop working.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class UserRole(TenantOwned, db.Model):
    __tablename__ = "user_roles"
    tenant_refs = {"user_id": "users"}
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "user_id", "role"),
        sa.CheckConstraint(f"role IN {ROLES}", name="known_role"),
    )

    user_id: Mapped[int] = mapped_column(BigId)
    role: Mapped[str] = mapped_column(sa.String(20))


class AccountToken(TenantOwned, db.Model):
    """A single-use, expiring emailed token (confirm email, reset password); only its hash is kept."""

    __tablename__ = "account_tokens"
    tenant_refs = {"user_id": "users"}

    user_id: Mapped[int] = mapped_column(BigId)
    purpose: Mapped[str] = mapped_column(sa.String(30))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[object] = mapped_column(UTCDateTime)
    used_at: Mapped[object | None] = mapped_column(UTCDateTime)


class ApiToken(TenantOwned, db.Model):
    """A bearer token for the REST API: scoped, expiring, revocable; only its hash is kept."""

    __tablename__ = "api_tokens"
    tenant_refs = {"user_id": "users"}

    user_id: Mapped[int] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[object] = mapped_column(UTCDateTime)
    revoked_at: Mapped[object | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[object | None] = mapped_column(UTCDateTime)


class Operator(db.Model):
    """A platform operator: runs the platform across tenants, signs in on the bare base domain."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
