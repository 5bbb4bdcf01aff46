import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow

DRAFT, OPEN, CLOSED = "draft", "open", "closed"
SWITCH_FREE, SWITCH_LOCKED, SWITCH_RESET = "free", "locked", "reset"
GENDERS = ("female", "male", "other")


class Challenge(TenantOwned, db.Model):
    __tablename__ = "challenges"
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "slug"),
        sa.CheckConstraint("counting_end > counting_start", name="counting_window"),
        sa.CheckConstraint("registration_closes_at > registration_opens_at", name="registration_window"),
    )

    slug: Mapped[str] = mapped_column(sa.String(80))
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(10), default=DRAFT)
    sports: Mapped[list] = mapped_column(sa.JSON, default=list)
    timezone: Mapped[str] = mapped_column(sa.String(64))
    registration_opens_at: Mapped[object] = mapped_column(UTCDateTime)
    registration_closes_at: Mapped[object] = mapped_column(UTCDateTime)
    counting_start: Mapped[object] = mapped_column(UTCDateTime)
    counting_end: Mapped[object] = mapped_column(UTCDateTime)
    goal_m: Mapped[int | None] = mapped_column(sa.BigInteger)
    team_size_cap: Mapped[int | None]
    team_switch_policy: Mapped[str] = mapped_column(sa.String(10), default=SWITCH_FREE)
    allow_individual: Mapped[bool] = mapped_column(default=True)
    allow_teams: Mapped[bool] = mapped_column(default=True)
    entry_fee_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Multi-stage events: where entrants come from, e.g. [{"challenge": "q1", "top_per_gender": 2, "min_m": 21000}]
    qualifiers: Mapped[list] = mapped_column(sa.JSON, default=list)
    ruleset_version: Mapped[int] = mapped_column(default=0)
    # Set when a strategy of the ruleset is not installed: scoring stops rather than guess.
    scoring_frozen_reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class RulesetVersion(TenantOwned, db.Model):
    """A challenge's ruleset as data; a change is a new version, never an edit."""

    __tablename__ = "ruleset_versions"
    tenant_refs = {"challenge_id": "challenges", "created_by_id": "users"}
    extra_table_args = (sa.UniqueConstraint("tenant_id", "challenge_id", "version"),)

    challenge_id: Mapped[int] = mapped_column(BigId)
    version: Mapped[int]
    ruleset: Mapped[dict] = mapped_column(sa.JSON)
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    created_by_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class Division(TenantOwned, db.Model):
    __tablename__ = "divisions"
    tenant_refs = {"challenge_id": "challenges"}
    extra_table_args = (sa.UniqueConstraint("tenant_id", "challenge_id", "name"),)

    challenge_id: Mapped[int] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(sa.String(100))
    position: Mapped[int] = mapped_column(default=0)


class Team(TenantOwned, db.Model):
    __tablename__ = "teams"
    tenant_refs = {"challenge_id": "challenges", "division_id": "divisions", "captain_id": "users"}
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "challenge_id", "name"),
        sa.UniqueConstraint("tenant_id", "join_code"),
    )

    challenge_id: Mapped[int] = mapped_column(BigId)
    division_id: Mapped[int | None] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(sa.String(120))
    join_code: Mapped[str] = mapped_column(sa.String(16))
    captain_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class Registration(TenantOwned, db.Model):
    """A person's entry in a challenge, with a bib number and optionally a team."""

    __tablename__ = "registrations"
    tenant_refs = {"challenge_id": "challenges", "user_id": "users", "team_id": "teams", "payment_id": "payments",
                   "beneficiary_id": "beneficiaries"}
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "challenge_id", "user_id"),
        sa.UniqueConstraint("tenant_id", "challenge_id", "bib"),
        sa.UniqueConstraint("tenant_id", "challenge_id", "id"),  # what a result's registration reference names
    )

    challenge_id: Mapped[int] = mapped_column(BigId)
    user_id: Mapped[int] = mapped_column(BigId)
    team_id: Mapped[int | None] = mapped_column(BigId, index=True)
    bib: Mapped[int]
    display_name: Mapped[str] = mapped_column(sa.String(200))
    gender: Mapped[str | None] = mapped_column(sa.String(10))
    birth_year: Mapped[int | None]
    # "active", or "pending_payment" until the entry fee is paid (it counts only when active).
    status: Mapped[str] = mapped_column(sa.String(20), default="active", server_default="active")
    payment_id: Mapped[int | None] = mapped_column(BigId)
    # The partner charity this participant's kilometres raise money for, where the challenge lets them choose.
    beneficiary_id: Mapped[int | None] = mapped_column(BigId)
    # Activities that start before this moment do not count (set when a team switch resets the km).
    counts_from: Mapped[object | None] = mapped_column(UTCDateTime)
    registered_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
