"""Recording money and reading balances.

Accounts are names with a prefix that says what they are:
  gateway:<name>                  money held for us at a payment gateway (asset)
  bank                            money received outside gateways, e.g. a sponsor's transfer (asset)
  fees:<gateway>                  what gateways charged (expense)
  donations:<challenge>:<beneficiary or "general">   donations received (income, credit balance)
  pledges:<challenge>:<pledge>:<beneficiary or "general">   pledges accrued, shared by beneficiary (income)
  receivable:pledge:<challenge>:<pledge>   what a sponsor owes on a pledge (asset)
  entry_fees:<challenge>          registration fees (income)
Every transaction sums to zero per currency; nothing is ever updated or deleted (a correction is a new
transaction), and PostgreSQL refuses UPDATE and DELETE on these tables to the app role.
"""

from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.db import db
from kindstride.ledger.models import LedgerEntry, LedgerTransaction


class LedgerError(ValueError):
    pass


REFERENCE_LENGTH = 200  # LedgerTransaction.reference


@dataclass(frozen=True)
class Posting:
    account: str
    amount: int


def record(kind, reference, currency, postings, memo="") -> LedgerTransaction:
    """Record a balanced transaction once: the same reference again returns the first one unchanged."""
    if not reference or len(reference) > REFERENCE_LENGTH:
        # Never cut: a cut reference would be looked up in full next time and recorded twice.
        raise LedgerError(f"reference: 1 to {REFERENCE_LENGTH} characters")
    existing = db.session.scalar(sa.select(LedgerTransaction).where(LedgerTransaction.reference == reference))
    if existing is not None:
        return existing
    postings = [p for p in postings if p.amount != 0]
    if not postings:
        raise LedgerError(f"{reference}: a transaction needs at least one non-zero posting")
    if any(not isinstance(p.amount, int) or isinstance(p.amount, bool) for p in postings):
        raise LedgerError(f"{reference}: amounts must be integers in minor units")
    if sum(p.amount for p in postings) != 0:
        raise LedgerError(f"{reference}: postings sum to {sum(p.amount for p in postings)}, not zero")
    if len(currency) != 3 or not currency.isupper():
        raise LedgerError(f"{reference}: currency must be an ISO 4217 code")
    transaction = LedgerTransaction(kind=kind, reference=reference, currency=currency, memo=memo[:500])
    db.session.add(transaction)
    db.session.flush()
    for posting in postings:
        db.session.add(LedgerEntry(transaction_id=transaction.id, account=posting.account, amount=posting.amount,
                                   currency=currency))
    db.session.flush()
    return transaction


def balance(account_prefix, currency=None) -> int:
    """The sum of entries on accounts starting with the prefix (a whole account name, or 'x:' for a group)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
    if account_prefix.endswith(":"):
        query = query.where(LedgerEntry.account.startswith(account_prefix, autoescape=True))
    else:
        query = query.where(LedgerEntry.account == account_prefix)
    if currency:
        query = query.where(LedgerEntry.currency == currency)
    return int(db.session.scalar(query))


def balances_by_account(account_prefix):
    rows = db.session.execute(
        sa.select(LedgerEntry.account, LedgerEntry.currency, sa.func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account.startswith(account_prefix, autoescape=True))
        .group_by(LedgerEntry.account, LedgerEntry.currency)
    )
    return {(account, currency): int(total) for account, currency, total in rows}


def problems() -> list[str]:
    """Every way the ledger is wrong: unbalanced transactions, entries in another currency than their
    transaction, transactions without entries. Empty when the ledger is sound."""
    found = []
    unbalanced = db.session.execute(
        sa.select(LedgerEntry.transaction_id, LedgerEntry.currency, sa.func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        .having(sa.func.sum(LedgerEntry.amount) != 0)
    ).all()
    found += [f"transaction {t}: {c} entries sum to {s}" for t, c, s in unbalanced]
    mismatched = db.session.execute(
        sa.select(LedgerEntry.id, LedgerEntry.currency, LedgerTransaction.currency)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerEntry.currency != LedgerTransaction.currency)
    ).all()
    found += [f"entry {e}: currency {c} in a {tc} transaction" for e, c, tc in mismatched]
    empty = db.session.scalars(
        sa.select(LedgerTransaction.id).where(~sa.exists().where(LedgerEntry.transaction_id == LedgerTransaction.id))
    ).all()
    found += [f"transaction {t}: no entries" for t in empty]
    return found


def totals_by_currency():
    sums = defaultdict(int)
    for currency, total in db.session.execute(
        sa.select(LedgerEntry.currency, sa.func.sum(LedgerEntry.amount)).group_by(LedgerEntry.currency)
    ):
        sums[currency] = int(total)
    return dict(sums)


@event.listens_for(Session, "before_flush")
def _append_only(session, flush_context, instances):
    for obj in [*session.dirty, *session.deleted]:
        if isinstance(obj, LedgerTransaction | LedgerEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise LedgerError("the ledger is append-only: record a correcting transaction instead")
