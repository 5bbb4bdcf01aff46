"""The tenant scope: which tenant the current request, job or command acts for.

Two walls keep tenants apart. The ORM adds `tenant_id = <scope>` to every query on a tenant-owned
model and raises when there is no scope; PostgreSQL row-level security reads the same scope from the
transaction-local setting `kindstride.tenant_id`, which is brought in line with the scope right before
any statement of a session's transaction runs (unless the statement is known to read no tenant table,
such as the lookup of the tenant itself). Setting it only when a statement follows saves a round trip
each time a scope is entered or left; a rolled-back savepoint (which undoes the setting) makes the next
statement set it again.
"""

from contextlib import contextmanager
from contextvars import ContextVar

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, with_loader_criteria
from sqlalchemy.pool import Pool
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
    """Switch the scope (the open transaction's RLS setting follows before its next statement); returns a
    token for leave_scope."""
    return _current_tenant_id.set(tenant_id)


def leave_scope(token):
    _current_tenant_id.reset(token)


@contextmanager
def tenant_scope(tenant_id: int):
    token = enter_scope(tenant_id)
    try:
        yield tenant_id
    finally:
        leave_scope(token)


# connection.info key: the setting as this transaction has it ("" for none), or _UNKNOWN; absent outside a
# session's transaction (connections used directly set what they need themselves).
_RLS_STATE = "kindstride.rls_setting"
_UNKNOWN = object()
# execution option: the statement reads and writes no tenant-owned table
_TENANT_FREE = "kindstride_tenant_free"
_SAVEPOINT_STATEMENTS = ("SAVEPOINT ", "ROLLBACK TO SAVEPOINT ", "RELEASE SAVEPOINT ")


@event.listens_for(Session, "after_begin")
def _scope_new_transaction(session, transaction, connection):
    if connection.dialect.name == "postgresql":
        connection.info[_RLS_STATE] = _UNKNOWN


@event.listens_for(Engine, "before_cursor_execute")
def _set_scope_before_statement(connection, cursor, statement, parameters, context, executemany):
    applied = connection.info.get(_RLS_STATE)
    if applied is None:
        return
    if context is not None and context.execution_options.get(_TENANT_FREE):
        return
    if statement.startswith(_SAVEPOINT_STATEMENTS):
        return  # reads nothing; and a setting made right before ROLLBACK TO SAVEPOINT would be undone by it
    tenant_id = _current_tenant_id.get()
    value = "" if tenant_id is None else str(tenant_id)
    if applied is not _UNKNOWN and applied == value:
        return
    # A server-side cursor's execute() only declares its query (it runs at the first fetch), and the statement
    # below would be declared in place of this one: the setting then goes through the connection. Any other
    # cursor runs it itself (a third less client CPU than a cursor made for it, once per transaction).
    runner = cursor.connection if isinstance(cursor, psycopg.ServerCursor) else cursor
    runner.execute("select set_config(%s, %s, true)", (RLS_SETTING, value))
    connection.info[_RLS_STATE] = value


def _forget_setting(connection, *args):
    connection.info.pop(_RLS_STATE, None)


def _setting_unknown(connection, *args):
    if _RLS_STATE in connection.info:
        connection.info[_RLS_STATE] = _UNKNOWN  # ROLLBACK TO SAVEPOINT undoes a set_config made after it


event.listen(Engine, "commit", _forget_setting)
event.listen(Engine, "rollback", _forget_setting)
event.listen(Engine, "rollback_savepoint", _setting_unknown)


@event.listens_for(Pool, "reset")
def _forget_on_reset(dbapi_connection, connection_record, reset_state):
    if connection_record is not None:
        connection_record.info.pop(_RLS_STATE, None)


@event.listens_for(Pool, "checkin")
def _forget_on_checkin(dbapi_connection, connection_record):
    if connection_record is not None:
        connection_record.info.pop(_RLS_STATE, None)


def _tables_in(state):
    """Tenant-owned tables a statement reads or writes (its entities, and any table in its FROM clauses:
    select(func.count()).select_from(User) names no entity but still reads users), and whether it reads
    other tables only (then the row-level-security setting does not matter to it)."""
    names = {mapper.local_table.name for mapper in state.all_mappers if issubclass(mapper.class_, TenantOwned)}
    if names:
        # An entity is tenant-owned: the statement is filtered and not tenant-free, whatever else it reads; walking
        # the whole statement for more tables (the costly part, on every query) would change neither.
        return names, False
    tenant_names = _tenant_table_names()
    tables = find_tables(state.statement, include_joins=True, include_aliases=True)
    names.update(table.name for table in tables if table.name in tenant_names)
    return names, bool(tables) and not names


_tenant_names_cache = (None, frozenset())


def _tenant_table_names():
    global _tenant_names_cache
    mappers = len(db.Model.registry.mappers)
    if _tenant_names_cache[0] != mappers:  # computed again only when a model is added
        from kindstride.db import tenant_tables

        _tenant_names_cache = (mappers, frozenset(tenant_tables()))
    return _tenant_names_cache[1]


@event.listens_for(Session, "do_orm_execute")
def _filter_by_tenant(state):
    if state.is_column_load:
        return
    tables, tenant_free = _tables_in(state)
    if tenant_free:
        state.update_execution_options(**{_TENANT_FREE: True})
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
