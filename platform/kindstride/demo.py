"""`kindstride demo`: a working site on this machine with no services (SQLite, in-process jobs)."""

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from werkzeug.serving import run_simple

from kindstride.accounts import services as accounts
from kindstride.accounts.models import Operator
from kindstride.db import db, utcnow
from kindstride.demo_data import seed_event
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import sync_tenants

DEMO_PASSWORD = "kindstride-demo"
OPERATOR_EMAIL = "operator@kindstride.localhost"


def seed_demo_accounts():
    """An operator, and an admin, a moderator, a sponsor and a participant on every tenant (idempotent)."""
    if db.session.scalar(sa.select(Operator).where(Operator.email == OPERATOR_EMAIL)) is None:
        accounts.create_operator(OPERATOR_EMAIL, "Platform operator", DEMO_PASSWORD)
    for tenant in db.session.scalars(sa.select(Tenant)).all():
        with tenant_scope(tenant.id):
            for role in ("admin", "moderator", "sponsor", "participant"):
                email = f"{role}@{tenant.slug}.example"
                user = accounts.find_user_by_email(email)
                if user is None:
                    user = accounts.sign_up(email, f"Demo {role}", DEMO_PASSWORD)
                    user.email_confirmed_at = utcnow()
                accounts.grant_role(user, role)
    db.session.commit()


@click.command("demo")
@click.option("--port", default=5000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Prepare the demo data and stop.")
@with_appcontext
def demo_command(port, no_serve):
    """Migrate, provision the tenants in tenants/, seed demo data and serve on http://localhost:PORT."""
    upgrade()
    for line in sync_tenants(current_app.config["TENANTS_DIR"]):
        click.echo(line)
    seed_demo_accounts()
    for tenant in db.session.scalars(sa.select(Tenant).order_by(Tenant.slug)).all():
        with tenant_scope(tenant.id):
            line = seed_event(tenant, DEMO_PASSWORD)
            db.session.commit()
        if line:
            click.echo(line)
    base = current_app.config["BASE_DOMAIN"]
    click.echo(f"\nOperator site: http://{base}:{port}/  ({OPERATOR_EMAIL} / {DEMO_PASSWORD})")
    for tenant in db.session.scalars(sa.select(Tenant).order_by(Tenant.slug)):
        click.echo(f"  {tenant.name}: http://{tenant.slug}.{base}:{port}/  (admin@{tenant.slug}.example)")
    click.echo(f"Every demo account's password is {DEMO_PASSWORD}\n")
    if not no_serve:
        # Flask refuses app.run() inside its CLI; the same development server, started directly.
        run_simple("127.0.0.1", port, current_app._get_current_object(), threaded=True)
