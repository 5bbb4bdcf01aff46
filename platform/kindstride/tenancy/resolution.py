"""Find the tenant a request is for, from its Host header.

`<slug>.<base domain>` and custom domains (tenant_domains) lead to a tenant; the bare base domain is
the platform operator's site. Anything else is unknown.
"""

import re
from dataclasses import dataclass

import sqlalchemy as sa

from kindstride.db import db
from kindstride.tenancy.models import Tenant, TenantDomain

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class HostMatch:
    platform: bool = False
    tenant: Tenant | None = None


def normalise_host(host: str) -> str:
    host = (host or "").strip().lower().rstrip(".")
    if host.startswith("["):  # IPv6 literal: keep the brackets, drop the port
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def resolve_host(host: str, base_domain: str) -> HostMatch | None:
    host = normalise_host(host)
    base_domain = base_domain.lower()
    if host == base_domain:
        return HostMatch(platform=True)
    suffix = "." + base_domain
    if host.endswith(suffix):
        slug = host[: -len(suffix)]
        if SLUG_PATTERN.match(slug):
            tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
            return HostMatch(tenant=tenant) if tenant else None
        return None
    domain = db.session.get(TenantDomain, host)
    return HostMatch(tenant=domain.tenant) if domain else None
