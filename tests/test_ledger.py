"""The ledger: balanced, idempotent, append-only, on every engine and enforced by PostgreSQL too."""

import pytest
import sqlalchemy as sa

from kindstride.db import db
from kindstride.ledger.models import LedgerEntry, LedgerTransaction
from kindstride.ledger.services import LedgerError, Posting, balance, problems, record
from kindstride.tenancy.scope import RLS_SETTING, tenant_scope


def test_balanced_transactions_are_recorded_once_per_reference(app, tenants):
    with tenant_scope(tenants["beta"]):
        first = record("payment", "payment:x:captured", "VND",
                       [Posting("gateway:vnpay", 50_000), Posting("donations:1:general", -50_000)])
        again = record("payment", "payment:x:captured", "VND",
                       [Posting("gateway:vnpay", 50_000), Posting("donations:1:general", -50_000)])
        db.session.commit()
        assert again.id == first.id
        assert balance("gateway:vnpay") == 50_000 and balance("donations:1:") == -50_000
        assert problems() == []
    with tenant_scope(tenants["alpha"]):
        assert balance("gateway:vnpay") == 0  # another tenant's ledger is not ours


def test_unbalanced_fractional_or_empty_transactions_are_refused(app, tenants):
    with tenant_scope(tenants["alpha"]):
        with pytest.raises(LedgerError, match="sum to 1, not zero"):
            record("payment", "a", "USD", [Posting("gateway:stripe", 1050), Posting("donations:1:general", -1049)])
        with pytest.raises(LedgerError, match="integers in minor units"):
            record("payment", "b", "USD", [Posting("gateway:stripe", 10.5), Posting("donations:1:general", -10.5)])
        with pytest.raises(LedgerError, match="at least one non-zero"):
            record("payment", "c", "USD", [Posting("gateway:stripe", 0)])
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == 0


def test_the_orm_refuses_to_change_or_delete_ledger_rows(app, tenants):
    with tenant_scope(tenants["alpha"]):
        record("payment", "p", "USD", [Posting("gateway:stripe", 100), Posting("donations:1:general", -100)])
        db.session.commit()
        entry = db.session.scalar(sa.select(LedgerEntry).limit(1))
        entry.amount = 999
        with pytest.raises(LedgerError, match="append-only"):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.scalar(sa.select(LedgerEntry).limit(1)))
        with pytest.raises(LedgerError, match="append-only"):
            db.session.flush()
        db.session.rollback()


def test_postgresql_refuses_updates_deletes_and_unbalanced_commits_from_the_app_role(app, tenants):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("database-level enforcement is PostgreSQL's")
    with tenant_scope(tenants["alpha"]):
        record("payment", "p", "USD", [Posting("gateway:stripe", 100), Posting("donations:1:general", -100)])
        db.session.commit()
        transaction_id = db.session.scalar(sa.select(LedgerTransaction.id))
    scope = sa.text("select set_config(:n, :v, false)")
    with db.engine.connect() as connection:
        connection.execute(scope, {"n": RLS_SETTING, "v": str(tenants["alpha"])})
        for statement in ("update ledger_entries set amount = 5", "delete from ledger_entries"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                connection.exec_driver_sql(statement)
            connection.rollback()
            connection.execute(scope, {"n": RLS_SETTING, "v": str(tenants["alpha"])})
        connection.execute(sa.text("insert into ledger_entries (tenant_id, transaction_id, account, amount, currency) "
                                   "values (:t, :x, 'gateway:stripe', 7, 'USD')"),
                           {"t": tenants["alpha"], "x": transaction_id})
        with pytest.raises(sa.exc.DatabaseError, match="does not balance to zero"):
            connection.commit()


def test_ledger_check_command_reports_each_tenant(app, tenants):
    with tenant_scope(tenants["beta"]):
        record("payment", "p", "VND", [Posting("gateway:vnpay", 10_000), Posting("donations:1:general", -10_000)])
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
    assert "alpha: ok" in result.output and "beta: ok; entries sum to {'VND': 0}" in result.output
