import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import TenantOwned, UTCDateTime, db, utcnow


class Payment(TenantOwned, db.Model):
    """One attempt to collect money through a gateway, for a donation or a registration fee.

    Its status mirrors what the gateway said when last asked (fetch_payment); the ledger, not this row,
    is where money is counted.
    """

    __tablename__ = "payments"
    extra_table_args = (
        sa.UniqueConstraint("tenant_id", "reference"),
        sa.UniqueConstraint("tenant_id", "gateway", "gateway_ref"),
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
        sa.CheckConstraint("amount > 0", name="positive_amount"),
    )

    purpose: Mapped[str] = mapped_column(sa.String(20))  # donation, entry_fee
    gateway: Mapped[str] = mapped_column(sa.String(30))
    reference: Mapped[str] = mapped_column(sa.String(100))
    # The donor's form submission id: a double click sends the same key and gets the same payment.
    idempotency_key: Mapped[str] = mapped_column(sa.String(64))
    gateway_ref: Mapped[str | None] = mapped_column(sa.String(100))
    # The ledger account credited when the money arrives, e.g. "donations:<challenge>:<beneficiary>".
    income_account: Mapped[str] = mapped_column(sa.String(120))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(TenantOwned, db.Model):
    """A gateway notification already handled: the same event id again changes nothing."""

    __tablename__ = "webhook_deliveries"
    extra_table_args = (sa.UniqueConstraint("tenant_id", "gateway", "event_id"),)

    gateway: Mapped[str] = mapped_column(sa.String(30))
    event_id: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(60))
    outcome: Mapped[str] = mapped_column(sa.String(30))
    received_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
