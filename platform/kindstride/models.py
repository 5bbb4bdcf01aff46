"""Every model, imported in one place so metadata, migrations and the RLS check see the whole schema."""

from kindstride.accounts.models import AccountToken, ApiToken, Operator, User, UserRole
from kindstride.tenancy.models import Tenant, TenantDomain, TenantSecret

__all__ = ["AccountToken", "ApiToken", "Operator", "Tenant", "TenantDomain", "TenantSecret", "User", "UserRole"]
