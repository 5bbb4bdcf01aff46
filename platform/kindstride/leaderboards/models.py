import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db


class ParticipantTotal(TenantOwned, db.Model):
    """A participant's counted total in a challenge: the sum of their accepted results' scores."""

    __tablename__ = "participant_totals"
    tenant_refs = {"challenge_id": "challenges", "registration_id": "registrations"}
    tenant_referenced = False  # nothing references a total: its rows are rewritten on every evaluation
    extra_table_args = (
        # One total per registration (a registration is in one challenge); also finds a participant's own total by
        # registration alone (every evaluation job, every "my rank").
        sa.UniqueConstraint("tenant_id", "registration_id"),
        # Ranking reads the top by score and counts who is ahead: a range scan on this index.
        sa.Index("ix_participant_totals_rank", "tenant_id", "challenge_id", "score"),
        sa.Index("ix_participant_totals_team", "tenant_id", "team_id"),
    )

    challenge_id: Mapped[int] = mapped_column(BigId)
    registration_id: Mapped[int] = mapped_column(BigId)
    bib: Mapped[int]
    team_id: Mapped[int | None] = mapped_column(BigId)
    score: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    distance_m: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    activities: Mapped[int] = mapped_column(default=0)
    reached_at: Mapped[object | None] = mapped_column(UTCDateTime)
    # Bumped on every recomputation: the leaderboard cache keeps the newest version of each total it is sent
    # (kindstride.leaderboards.ranking), whatever order those arrive in.
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


class TeamTotal(TenantOwned, db.Model):
    __tablename__ = "team_totals"
    tenant_refs = {"challenge_id": "challenges", "team_id": "teams", "division_id": "divisions"}
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "challenge_id", "team_id"),
        sa.Index("ix_team_totals_rank", "tenant_id", "challenge_id", "division_id", "score"),
        sa.Index("ix_team_totals_team", "tenant_id", "team_id"),  # refresh_team locks a team's row by team alone
    )

    challenge_id: Mapped[int] = mapped_column(BigId)
    team_id: Mapped[int] = mapped_column(BigId)
    division_id: Mapped[int | None] = mapped_column(BigId)
    members: Mapped[int] = mapped_column(default=0)
    score: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    distance_m: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    reached_at: Mapped[object | None] = mapped_column(UTCDateTime)
