import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow


class LedgerTransaction(TenantOwned, db.Model):
    """One money event (a donation captured, a fee, a refund, a pledge accrual); its entries sum to zero.

    `reference` makes recording idempotent: the same event recorded twice is one transaction.
    """

    __tablename__ = "ledger_transactions"
    extra_table_args = (sa.UniqueConstraint("tenant_id", "reference"),)

    kind: Mapped[str] = mapped_column(sa.String(30))
    reference: Mapped[str] = mapped_column(sa.String(200))
    currency: Mapped[str] = mapped_column(sa.String(3))
    memo: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(TenantOwned, db.Model):
    """A signed amount, in the currency's minor unit, on one account. Debits positive, credits negative."""

    __tablename__ = "ledger_entries"
    tenant_refs = {"transaction_id": "ledger_transactions"}
    extra_table_args = (
        sa.Index("ix_ledger_entries_account", "tenant_id", "account"),
        sa.Index("ix_ledger_entries_transaction", "tenant_id", "transaction_id"),
        sa.CheckConstraint("amount <> 0", name="nonzero"),
    )

    transaction_id: Mapped[int] = mapped_column(BigId)
    account: Mapped[str] = mapped_column(sa.String(120))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
