"""Every model, imported in one place so metadata, migrations and the RLS check see the whole schema."""

from kindstride.accounts.models import AccountToken, ApiToken, Operator, User, UserRole
from kindstride.activities.models import Activity, ActivityResult
from kindstride.activities.strava_models import StravaAthleteRoute, StravaConnection
from kindstride.audit import AuditEntry
from kindstride.challenges.models import Challenge, Division, Registration, RulesetVersion, Team
from kindstride.fundraising.models import Beneficiary, Donation, FundraisingPage, Pledge
from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
from kindstride.ledger.models import LedgerEntry, LedgerTransaction
from kindstride.payments.models import Payment, WebhookDelivery
from kindstride.tenancy.models import Tenant, TenantDomain, TenantSecret
from kindstride.web.models import ThemeAsset

__all__ = [
    "AccountToken", "Activity", "ActivityResult", "ApiToken", "AuditEntry", "Beneficiary", "Challenge", "Division",
    "Donation", "FundraisingPage", "LedgerEntry", "LedgerTransaction", "Operator", "ParticipantTotal", "Payment",
    "Pledge", "Registration", "RulesetVersion", "StravaAthleteRoute", "StravaConnection", "Team", "TeamTotal",
    "Tenant", "TenantDomain", "TenantSecret", "ThemeAsset", "User", "UserRole", "WebhookDelivery",
]
