"""`kindstride tenants ...`: the platform operator's commands for tenants."""

from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from kindstride.db import db
from kindstride.tenancy import services
from kindstride.tenancy.models import ACTIVE, SUSPENDED, Tenant

tenants_cli = AppGroup("tenants", help="Provision and manage tenants.")


def _fail_on_config_error(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except services.TenantConfigError as error:
            db.session.rollback()
            raise click.ClickException(str(error)) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@tenants_cli.command("sync")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of tenant folders (default: KINDSTRIDE_TENANTS_DIR).")
@_fail_on_config_error
def sync_command(folder):
    """Create or update a tenant for every <folder>/<slug>/tenant.toml."""
    folder = folder or Path(current_app.config["TENANTS_DIR"])
    if not folder.is_dir():
        raise click.ClickException(f"{folder} is not a folder")
    for line in services.sync_tenants(folder):
        click.echo(line)


@tenants_cli.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--locale", default="en", show_default=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--timezone", default="UTC", show_default=True)
@_fail_on_config_error
def create_command(slug, name, locale, currency, timezone):
    """Create a tenant without a folder (branding can be set later)."""
    tenant = services.create_tenant(slug, name, locale, currency.upper(), timezone)
    click.echo(f"created {tenant.slug} (id {tenant.id})")


@tenants_cli.command("list")
def list_command():
    """List tenants with their status, locale, currency and domains."""
    tenants = db.session.scalars(sa.select(Tenant).order_by(Tenant.slug)).all()
    if not tenants:
        click.echo("no tenants")
    for tenant in tenants:
        domains = ",".join(d.domain for d in tenant.domains) or "-"
        click.echo(f"{tenant.slug:<20} {tenant.status:<10} {tenant.locale:<3} {tenant.currency:<4} "
                   f"{tenant.timezone:<20} {domains}  {tenant.name}")


@tenants_cli.command("suspend")
@click.argument("slug")
@_fail_on_config_error
def suspend_command(slug):
    """Suspend a tenant: its site answers 503 until re-activated; nothing is deleted."""
    click.echo(f"{services.set_status(slug, SUSPENDED).slug} suspended")


@tenants_cli.command("activate")
@click.argument("slug")
@_fail_on_config_error
def activate_command(slug):
    """Re-activate a suspended tenant."""
    click.echo(f"{services.set_status(slug, ACTIVE).slug} active")
