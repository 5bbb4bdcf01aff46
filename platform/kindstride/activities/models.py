import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow

# Where an activity came from, best first: when two recordings overlap, the better one counts.
SOURCE_RANK = {"device": 0, "strava": 1, "app": 2, "api": 3, "manual": 4}
ACCEPTED, REJECTED, FLAGGED, DUPLICATE = "accepted", "rejected", "flagged", "duplicate"
# What a moderator has to look at: moderation.review_queue's condition ('open' is moderation.OPEN).
REVIEW_WHERE = f"status = '{FLAGGED}' OR appeal_state = 'open'"


class Activity(TenantOwned, db.Model):
    """One recorded run, walk or ride of a person, whatever challenges it counts for."""

    __tablename__ = "activities"
    tenant_refs = {"user_id": "users", "duplicate_of_id": "activities"}
    tenant_fk = False  # proven by the reference to the user
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "user_id", "fingerprint"),
        sa.Index("ix_activities_user_start", "tenant_id", "user_id", "start"),
    )

    user_id: Mapped[int] = mapped_column(BigId)
    source: Mapped[str] = mapped_column(sa.String(10))
    sport: Mapped[str] = mapped_column(sa.String(20))
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    start: Mapped[object] = mapped_column(UTCDateTime)
    elapsed_s: Mapped[float]
    moving_s: Mapped[float]
    distance_m: Mapped[float]
    has_gps: Mapped[bool] = mapped_column(default=False)
    is_indoor: Mapped[bool] = mapped_column(default=False)
    split_paces: Mapped[list] = mapped_column(sa.JSON, default=list)
    device: Mapped[str | None] = mapped_column(sa.String(200))
    file_name: Mapped[str | None] = mapped_column(sa.String(255))
    # The same upload twice, or the same Strava activity twice, is one activity.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    external_id: Mapped[str | None] = mapped_column(sa.String(64))
    # Strava's terms: a Strava activity's details are shown to its owner only.
    owner_only: Mapped[bool] = mapped_column(default=False)
    duplicate_of_id: Mapped[int | None] = mapped_column(BigId)
    received_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class ActivityResult(TenantOwned, db.Model):
    """The verdict on one activity in one challenge, under one ruleset version."""

    __tablename__ = "activity_results"
    tenant_refs = {"activity_id": "activities", "decided_by_id": "users"}
    tenant_fk = False  # proven by the reference to the activity
    tenant_referenced = False  # nothing references a result: a million of them are written per import
    extra_table_args = (
        # One check proves both the registration and that it is in this result's challenge.
        sa.ForeignKeyConstraint(["tenant_id", "challenge_id", "registration_id"],
                                ["registrations.tenant_id", "registrations.challenge_id", "registrations.id"],
                                name="fk_activity_results_registration_in_challenge"),
        sa.UniqueConstraint("tenant_id", "activity_id", "challenge_id"),  # also finds an activity's verdicts
        # The review queue (flagged results and open appeals, oldest first): a few rows in a hundred, so an import
        # writes few entries, and the queue is read in order from the index.
        sa.Index("ix_activity_results_review", "tenant_id", "challenge_id", "evaluated_at", "id",
                 postgresql_where=sa.text(REVIEW_WHERE), sqlite_where=sa.text(REVIEW_WHERE)),
        sa.Index("ix_activity_results_registration", "tenant_id", "registration_id"),
    )

    activity_id: Mapped[int] = mapped_column(BigId)
    challenge_id: Mapped[int] = mapped_column(BigId)
    registration_id: Mapped[int] = mapped_column(BigId)
    ruleset_version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(10))
    reasons: Mapped[list] = mapped_column(sa.JSON, default=list)
    # The score as counted (0 unless accepted), in the ruleset's scoring unit, multipliers applied.
    score: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    counted_distance_m: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    local_day: Mapped[object] = mapped_column(sa.Date)
    # The activity's end while it counts (the tie-break "who reached the total first"), else NULL.
    counted_at: Mapped[object | None] = mapped_column(UTCDateTime)
    # A moderator's decision overrides the rules until the ruleset changes.
    decided_by_id: Mapped[int | None] = mapped_column(BigId)
    decision_comment: Mapped[str | None] = mapped_column(sa.Text)
    appeal_message: Mapped[str | None] = mapped_column(sa.Text)
    appeal_state: Mapped[str | None] = mapped_column(sa.String(10))  # open, upheld, denied
    evaluated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
