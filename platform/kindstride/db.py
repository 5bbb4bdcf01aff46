"""The database handle and the base for tenant-owned tables.

A tenant-owned table has a non-null tenant_id, a unique (tenant_id, id) key, and references other
tenant rows through composite (tenant_id, <ref>_id) foreign keys, so a row can never point into
another tenant. Queries on these tables are filtered by the tenancy scope (kindstride.tenancy.scope).
"""

import select
from datetime import UTC, datetime

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def refuse_dead_connection(dbapi_connection, _record, _proxy):
    """The pool's pre-ping without a round trip (pool "checkout" event, PostgreSQL): an idle connection has
    nothing to read until it sends a query, so anything readable means the server hung up or is about to (a
    restart or pg_terminate_backend sends a FATAL message, then closes). DisconnectionError makes the pool
    discard the connection and hand out a new one."""
    if dbapi_connection.closed:
        raise sa.exc.DisconnectionError("the connection was closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise sa.exc.DisconnectionError("the server spoke or hung up while the connection was idle")


def utcnow():
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware datetimes in datetime.UTC on every engine: SQLite forgets the zone, and psycopg gives the
    session's zone (say Etc/UTC), which compares with datetime.UTC values several times slower."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given where UTC is required")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is not UTC:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class TenantOwned:
    """Mixin for every tenant-owned model. Subclasses declare references with `tenant_refs`."""

    # {"user_id": "users"}: column -> referenced tenant table; becomes a composite foreign key.
    tenant_refs: dict = {}
    # Extra table arguments (indexes, constraints) of the subclass.
    extra_table_args: tuple = ()
    # Whether tenant_id also references tenants(id) itself. A table whose every row references another tenant
    # row through (tenant_id, x) has its tenant proven by that reference; the tables written a million rows at
    # a time leave out the second proof (each foreign key is a lookup and a row lock per inserted row).
    tenant_fk: bool = True
    # Whether other tenant rows may reference this table's rows: such a reference, (tenant_id, x), needs
    # UNIQUE (tenant_id, id). A table nothing references leaves it out (one index less to write per row).
    tenant_referenced: bool = True

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:
        # No index of its own: UNIQUE (tenant_id, id) below (or another index of the table) starts with it and
        # serves every lookup by tenant.
        references = (sa.ForeignKey("tenants.id", ondelete="RESTRICT"),) if cls.tenant_fk else ()
        return mapped_column(BigId, *references, nullable=False)

    @declared_attr.directive
    def __table_args__(cls):
        refs = tuple(
            sa.ForeignKeyConstraint(["tenant_id", column], [f"{table}.tenant_id", f"{table}.id"])
            for column, table in cls.tenant_refs.items()
        )
        unique = (sa.UniqueConstraint("tenant_id", "id"),) if cls.tenant_referenced else ()
        return (*unique, *refs, *cls.extra_table_args)


def tenant_tables():
    """Names of every tenant-owned table: the ones row-level security must cover."""
    return sorted(
        mapper.local_table.name for mapper in db.Model.registry.mappers if issubclass(mapper.class_, TenantOwned)
    )
