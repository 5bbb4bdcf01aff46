"""PostgreSQL row-level security: the statements migrations run, and the check that they did.

Migrations run as the owner role; the app connects as DB_APP_ROLE, which owns nothing, is no
superuser and has no BYPASSRLS, so FORCE'd policies bind it on every tenant table.
"""

import re

import sqlalchemy as sa

from kindstride.tenancy.scope import RLS_SETTING

POLICY = "tenant_isolation"
_TENANT_MATCH = f"tenant_id = nullif(current_setting('{RLS_SETTING}', true), '')::bigint"


def enable_rls_statements(table):
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY} ON {table}",
        f"CREATE POLICY {POLICY} ON {table} USING ({_TENANT_MATCH}) WITH CHECK ({_TENANT_MATCH})",
    ]


def app_role_statements(role):
    """Create the app role if missing and grant it data access (never ownership) in this database."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"KINDSTRIDE_DB_APP_ROLE {role!r} is not a plain lowercase PostgreSQL identifier")
    return [
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
              END IF;
            END $$""",  # noqa: S608 (role is a checked identifier)
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]


def append_only_statements(tables, role):
    """The app role may read and add ledger rows, never change or remove them."""
    return [f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}" for table in tables]


def apply(op, statements):
    """Run statements from a migration, on PostgreSQL only (SQLite has no row-level security)."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in statements:
            op.execute(statement)


def rls_problems(connection, tables):
    """What is wrong with row-level security on these tables; empty when every wall stands."""
    rows = connection.execute(
        sa.text(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname AND p.policyname = :policy)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind = 'r'
            """
        ),
        {"policy": POLICY},
    )
    state = {name: (enabled, forced, has_policy) for name, enabled, forced, has_policy in rows}
    problems = []
    for table in tables:
        enabled, forced, has_policy = state.get(table, (False, False, False))
        if not (enabled and forced and has_policy):
            problems.append(f"{table}: enabled={enabled} forced={forced} policy={has_policy}")
    return problems


APP_ROLE_CHECK = """
    SELECT r.rolsuper, r.rolbypassrls,
           (SELECT count(*) FROM pg_tables WHERE tableowner = current_user AND schemaname = current_schema())
    FROM pg_roles r WHERE r.rolname = current_user
"""


def app_role_problems(row):
    """Reasons (from the APP_ROLE_CHECK row) why this role could step over the walls."""
    superuser, bypass, owned = row
    problems = []
    if superuser:
        problems.append("is a superuser")
    if bypass:
        problems.append("has BYPASSRLS")
    if owned:
        problems.append(f"owns {owned} tables")
    return problems
