import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow


class Beneficiary(TenantOwned, db.Model):
    """A partner charity that a challenge raises money for."""

    __tablename__ = "beneficiaries"
    tenant_refs = {"challenge_id": "challenges"}
    extra_table_args = (sa.UniqueConstraint("tenant_id", "challenge_id", "name"),)

    challenge_id: Mapped[int] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    website: Mapped[str | None] = mapped_column(sa.String(300))


class Pledge(TenantOwned, db.Model):
    """A sponsor's promise, computed by a pledge-rule plugin from the challenge's results."""

    __tablename__ = "pledges"
    tenant_refs = {"challenge_id": "challenges", "sponsor_id": "users", "beneficiary_id": "beneficiaries",
                   "team_id": "teams", "division_id": "divisions"}

    challenge_id: Mapped[int] = mapped_column(BigId)
    sponsor_id: Mapped[int] = mapped_column(BigId)
    sponsor_name: Mapped[str] = mapped_column(sa.String(200))
    rule: Mapped[str] = mapped_column(sa.String(60))
    params: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    currency: Mapped[str] = mapped_column(sa.String(3))
    beneficiary_id: Mapped[int | None] = mapped_column(BigId)
    team_id: Mapped[int | None] = mapped_column(BigId)
    division_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class FundraisingPage(TenantOwned, db.Model):
    """A participant's own page: a personal goal and story that donors give to."""

    __tablename__ = "fundraising_pages"
    tenant_refs = {"registration_id": "registrations"}
    extra_table_args = (sa.UniqueConstraint("tenant_id", "registration_id"),)

    registration_id: Mapped[int] = mapped_column(BigId)
    goal_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    story: Mapped[str] = mapped_column(sa.Text, default="")


class Donation(TenantOwned, db.Model):
    """A donor's gift; its money is in the ledger once its payment succeeded, never before."""

    __tablename__ = "donations"
    tenant_refs = {"challenge_id": "challenges", "team_id": "teams", "registration_id": "registrations",
                   "beneficiary_id": "beneficiaries", "payment_id": "payments"}
    extra_table_args = (sa.CheckConstraint("amount > 0", name="positive_amount"),)

    challenge_id: Mapped[int] = mapped_column(BigId)
    team_id: Mapped[int | None] = mapped_column(BigId)
    registration_id: Mapped[int | None] = mapped_column(BigId)
    beneficiary_id: Mapped[int | None] = mapped_column(BigId)
    payment_id: Mapped[int | None] = mapped_column(BigId)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    donor_name: Mapped[str] = mapped_column(sa.String(200))
    donor_email: Mapped[str] = mapped_column(sa.String(254))
    anonymous: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(sa.String(1000), default="")
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
