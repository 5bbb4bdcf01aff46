import click
import sqlalchemy as sa
from flask.cli import AppGroup

from kindstride.db import db
from kindstride.ledger.services import problems, totals_by_currency
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import tenant_scope

ledger_cli = AppGroup("ledger", help="The money ledger.")


@ledger_cli.command("check")
def check_command():
    """Verify the whole ledger, tenant by tenant: every transaction balances to zero."""
    failed = False
    for tenant in db.session.scalars(sa.select(Tenant).order_by(Tenant.slug)).all():
        with tenant_scope(tenant.id):
            found = problems()
            sums = totals_by_currency()
        status = "ok" if not found else f"{len(found)} problem(s)"
        click.echo(f"{tenant.slug}: {status}; entries sum to {sums or 0} by currency")
        for line in found:
            click.echo(f"  {line}")
        failed = failed or bool(found)
    if failed:
        raise click.ClickException("the ledger does not balance")
