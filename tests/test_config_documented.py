"""The operations guide lists every configuration variable, and only those; and every KINDSTRIDE_* name the
code reads is a configuration variable (kindstride.config.ENV_VARIABLES) or, for a tool that is not the app
(the benchmark harness), is documented under the guide's "Other variables"."""

import re
from pathlib import Path

import sqlalchemy as sa

from kindstride.config import ENV_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "deploy" / "OPERATIONS.md"
NAME = re.compile(r"KINDSTRIDE_[A-Z0-9_]*[A-Z0-9]")
# Where configuration is read: the application, and the Python that deploy/ runs (gunicorn.conf.py).
SOURCES = [*sorted((ROOT / "platform").rglob("*.py")), *sorted((ROOT / "deploy").rglob("*.py"))]


def _section(title):
    text = GUIDE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else len(text)]


def _documented_variables():
    rows = [line for line in _section("Configuration variables").splitlines() if line.startswith("| `KINDSTRIDE_")]
    return [line.split("`")[1] for line in rows]


def _other_variables():
    return set(NAME.findall(_section("Other variables")))


def test_every_kindstride_variable_read_in_the_code_is_documented():
    read = {}
    for path in SOURCES:
        for name in NAME.findall(path.read_text()):
            read.setdefault(name, path.relative_to(ROOT))
    unknown = {name: str(path) for name, path in read.items()
               if name not in ENV_VARIABLES and name not in _other_variables()}
    assert not unknown, (f"add these to kindstride.config.ENV_VARIABLES and deploy/OPERATIONS.md's 'Configuration "
                         f"variables' (or, if no app process reads them, to its 'Other variables'): {unknown}")
    assert len(read) >= len(ENV_VARIABLES) // 2  # the scan found the code's variables at all


def test_the_guide_lists_exactly_the_configuration_variables_once():
    documented = _documented_variables()
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    missing = set(ENV_VARIABLES) - set(documented)
    assert not missing, f"document in deploy/OPERATIONS.md, 'Configuration variables': {sorted(missing)}"
    stale = set(documented) - set(ENV_VARIABLES)
    assert not stale, f"deploy/OPERATIONS.md lists variables the code no longer has: {sorted(stale)}"
    both = set(ENV_VARIABLES) & _other_variables()
    assert not both, f"configuration variables belong in 'Configuration variables' only: {sorted(both)}"


def test_the_guide_covers_what_the_issue_asks_for():
    text = GUIDE.read_text()
    for title in ("Configuration variables", "Health, readiness and metrics", "Logs", "Backups and restore",
                  "Rotating secrets", "Adding a tenant with a custom domain", "Scaling out",
                  "A tenant-distributed PostgreSQL (Citus)"):
        assert f"\n## {title}\n" in text, title
    assert "kindstride secrets rotate" in _section("Rotating secrets")


def test_the_citus_section_names_every_platform_table_and_every_unique_key_without_tenant_id():
    from kindstride import models  # noqa: F401
    from kindstride.db import db, tenant_tables

    citus = _section("A tenant-distributed PostgreSQL (Citus)")
    tenant = set(tenant_tables())
    for table in db.metadata.sorted_tables:
        if table.name not in tenant:
            assert f"create_reference_table('{table.name}')" in citus, f"{table.name}: a reference table"
            continue
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint) and "tenant_id" not in constraint.columns:
                columns = ", ".join(c.name for c in constraint.columns)
                assert f"{table.name}.{columns}" in citus, f"say how UNIQUE {table.name}({columns}) changes"
