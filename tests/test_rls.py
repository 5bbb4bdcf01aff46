"""The second wall: PostgreSQL row-level security holds even for SQL that bypasses the ORM."""

import pytest
import sqlalchemy as sa

from kindstride.db import db, tenant_tables
from kindstride.tenancy.rls import rls_problems
from kindstride.tenancy.scope import RLS_SETTING

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row-level security needs PostgreSQL (set KINDSTRIDE_REQUIRE_SERVICES=1 to fail instead)")
    return app


def test_every_tenant_table_has_forced_rls_with_the_policy(pg_app):
    owner = sa.create_engine(pg_app.config["MIGRATE_DATABASE_URL"], poolclass=sa.pool.NullPool)
    with owner.connect() as connection:
        assert rls_problems(connection, tenant_tables()) == []
    owner.dispose()


def test_raw_sql_as_the_app_role_without_a_tenant_sees_no_rows(pg_app, tenants, make_user):
    make_user(tenants["alpha"], "ann@alpha.example")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("select current_user").scalar() == "kindstride_app"
        assert connection.exec_driver_sql("select count(*) from users").scalar() == 0
        connection.execute(sa.text("select set_config(:n, :v, false)"), {"n": RLS_SETTING, "v": str(tenants["beta"])})
        assert connection.exec_driver_sql("select count(*) from users").scalar() == 0
        connection.execute(sa.text("select set_config(:n, :v, false)"), {"n": RLS_SETTING, "v": str(tenants["alpha"])})
        assert connection.exec_driver_sql("select count(*) from users").scalar() == 1


def test_database_refuses_an_insert_carrying_another_tenants_id(pg_app, tenants):
    with db.engine.connect() as connection:
        connection.execute(sa.text("select set_config(:n, :v, false)"), {"n": RLS_SETTING, "v": str(tenants["alpha"])})
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            connection.execute(
                sa.text("insert into users (tenant_id, email, name, is_disabled, session_version, created_at) "
                        "values (:t, 'x@y.example', 'X', false, 1, now())"),
                {"t": tenants["beta"]},
            )


def test_app_refuses_to_connect_as_a_role_that_bypasses_rls(pg_app, make_app):
    owner_app = make_app(DATABASE_URL=pg_app.config["MIGRATE_DATABASE_URL"])
    with owner_app.app_context(), pytest.raises(RuntimeError, match="connect as the app role"):
        db.session.execute(sa.text("select 1"))
