import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow

ACTIVE = "active"
SUSPENDED = "suspended"


class Tenant(db.Model):
    """A customer organisation with its own site. A platform table: no tenant_id, no row-level security."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(sa.String(63), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(20), default=ACTIVE)
    locale: Mapped[str] = mapped_column(sa.String(10), default="en")
    currency: Mapped[str] = mapped_column(sa.String(3), default="USD")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # Branding, enabled plugins and SSO settings from tenant.toml; secrets live in tenant_secrets.
    settings: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)

    domains: Mapped[list["TenantDomain"]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", order_by="TenantDomain.domain"
    )

    @property
    def is_active(self):
        return self.status == ACTIVE

    @property
    def branding(self):
        return self.settings.get("branding", {})

    @property
    def enabled_plugins(self):
        return self.settings.get("plugins", [])

    @property
    def sso(self):
        return self.settings.get("sso")


class TenantDomain(db.Model):
    """A custom domain routed to a tenant. A platform routing table: read before any tenant is known."""

    __tablename__ = "tenant_domains"

    domain: Mapped[str] = mapped_column(sa.String(253), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[Tenant] = relationship(back_populates="domains")


class TenantSecret(TenantOwned, db.Model):
    """A tenant's secret (OIDC client secret, gateway key), encrypted with KINDSTRIDE_SECRETS_KEY."""

    __tablename__ = "tenant_secrets"
    extra_table_args = (sa.UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(sa.String(100))
    ciphertext: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
