"""Every model, imported in one place so metadata, migrations and the RLS check see the whole schema."""

from kindstride.accounts.models import AccountToken, ApiToken, Operator, User, UserRole
from kindstride.activities.models import Activity, ActivityResult
from kindstride.audit import AuditEntry
from kindstride.challenges.models import Challenge, Division, Registration, RulesetVersion, Team
from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
from kindstride.tenancy.models import Tenant, TenantDomain, TenantSecret

__all__ = [
    "AccountToken", "Activity", "ActivityResult", "ApiToken", "AuditEntry", "Challenge", "Division", "Operator",
    "ParticipantTotal", "Registration", "RulesetVersion", "Team", "TeamTotal", "Tenant", "TenantDomain",
    "TenantSecret", "User", "UserRole",
]
