"""The tenant scope: which tenant the current request, job or command acts for.

Two walls keep tenants apart. The ORM adds `tenant_id = <scope>` to every query on a tenant-owned
model and raises when there is no scope; PostgreSQL row-level security reads the same scope from the
transaction-local setting `kindstride.tenant_id`, set here at the start of every transaction.
"""

from contextlib import contextmanager
from contextvars import ContextVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, with_loader_criteria
from sqlalchemy.sql.util import find_tables

from kindstride.db import TenantOwned, db

RLS_SETTING = "kindstride.tenant_id"

_current_tenant_id: ContextVar[int | None] = ContextVar("kindstride_tenant_id", default=None)


class TenantScopeError(RuntimeError):
    """Tenant-owned data was touched outside a tenant scope, or across tenants."""


def current_tenant_id() -> int | None:
    return _current_tenant_id.get()


def require_tenant_id() -> int:
    tenant_id = _current_tenant_id.get()
    if tenant_id is None:
        raise TenantScopeError("this needs a tenant scope; run it inside tenant_scope(tenant_id)")
    return tenant_id


def enter_scope(tenant_id: int | None):
    """Switch the scope (and the open transaction's RLS setting); returns a token for leave_scope."""
    token = _current_tenant_id.set(tenant_id)
    _sync_open_transaction()
    return token


def leave_scope(token):
    _current_tenant_id.reset(token)
    _sync_open_transaction()


@contextmanager
def tenant_scope(tenant_id: int):
    token = enter_scope(tenant_id)
    try:
        yield tenant_id
    finally:
        leave_scope(token)


def _sync_open_transaction():
    session = db.session()
    transaction = session.get_transaction()
    # A transaction that failed (a statement refused, or its connection lost, mid-request) is rolled back, never
    # used again, and the next one sets the scope when it begins. Touching it here would only raise again (from
    # the request's teardown, turning a handled error into a crash).
    if transaction is None or not transaction.is_active:
        return
    try:
        _set_rls_tenant(session.connection())
    except sa.exc.PendingRollbackError:
        return  # its connection died mid-transaction: nothing runs in it again until it is rolled back
    except sa.exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise


def _set_rls_tenant(connection):
    if connection.dialect.name == "postgresql":
        tenant_id = _current_tenant_id.get()
        connection.execute(
            sa.text("select set_config(:name, :value, true)"),
            {"name": RLS_SETTING, "value": "" if tenant_id is None else str(tenant_id)},
        )


def _tenant_tables_in(state):
    """Tenant-owned tables a statement reads or writes: its entities, and any table in its FROM clauses
    (select(func.count()).select_from(User) names no entity but still reads users)."""
    names = {mapper.local_table.name for mapper in state.all_mappers if issubclass(mapper.class_, TenantOwned)}
    names.update(table.name for table in find_tables(state.statement, include_joins=True, include_aliases=True)
                 if table.name in _tenant_table_names())
    return names


def _tenant_table_names():
    from kindstride.db import tenant_tables

    return set(tenant_tables())


@event.listens_for(Session, "after_begin")
def _scope_new_transaction(session, transaction, connection):
    _set_rls_tenant(connection)


@event.listens_for(Session, "do_orm_execute")
def _filter_by_tenant(state):
    if state.is_column_load:
        return
    tables = _tenant_tables_in(state)
    if not tables:
        return
    tenant_id = _current_tenant_id.get()
    if tenant_id is None:
        raise TenantScopeError(f"query on tenant-owned {', '.join(sorted(tables))} outside a tenant scope")
    state.statement = state.statement.options(
        with_loader_criteria(TenantOwned, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _stamp_and_check_tenant(session, flush_context, instances):
    for obj in [*session.new, *session.dirty]:
        if not isinstance(obj, TenantOwned):
            continue
        tenant_id = require_tenant_id()
        if obj.tenant_id is None and obj in session.new:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise TenantScopeError(
                f"{type(obj).__name__} of tenant {obj.tenant_id} written in the scope of tenant {tenant_id}"
            )
    for obj in session.deleted:
        if isinstance(obj, TenantOwned) and obj.tenant_id != require_tenant_id():
            raise TenantScopeError(f"{type(obj).__name__} of another tenant deleted")
