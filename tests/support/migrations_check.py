"""`make migrations-check`: `kindstride db upgrade` on empty databases, then `db check` (models == migrations)
and the row-level-security check on PostgreSQL. Exits non-zero on any difference."""

import os
import subprocess
import sys
import tempfile
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support.services import find_postgres

KINDSTRIDE = [sys.executable, "-m", "kindstride.cli"]


def run(env, *args):
    print("+ kindstride", *args, flush=True)
    subprocess.run([*KINDSTRIDE, *args], env={**os.environ, **env}, check=True)


def check(database_url, instance):
    env = {"KINDSTRIDE_DATABASE_URL": database_url, "KINDSTRIDE_INSTANCE_PATH": instance}
    run(env, "db", "upgrade")
    run(env, "db", "check")
    run(env, "db", "upgrade")  # a second run changes nothing


def main():
    with tempfile.TemporaryDirectory() as instance:
        check(f"sqlite:///{instance}/check.sqlite", instance)
        postgres = find_postgres(os.environ.get("KINDSTRIDE_TEST_DATABASE_URL"))
        if postgres is None:
            if os.environ.get("KINDSTRIDE_REQUIRE_SERVICES") == "1":
                sys.exit("PostgreSQL is required for the migrations check")
            print("PostgreSQL not reachable: checked SQLite only")
            return
        name = f"kindstride_check_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
            check(url, instance)
            subprocess.run([sys.executable, "-c", RLS_CHECK, url], check=True)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


RLS_CHECK = """
import sys, sqlalchemy as sa
from kindstride import models
from kindstride.db import tenant_tables
from kindstride.tenancy.rls import rls_problems
with sa.create_engine(sys.argv[1]).connect() as connection:
    problems = rls_problems(connection, tenant_tables())
print("row-level security:", "; ".join(problems) or f"forced with a policy on all {len(tenant_tables())} tenant tables")
sys.exit(1 if problems else 0)
"""

if __name__ == "__main__":
    main()
