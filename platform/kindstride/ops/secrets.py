"""`kindstride secrets rotate`: re-encrypt every secret stored at rest with the newest key.

KINDSTRIDE_SECRETS_KEY lists Fernet keys, newest first; every key decrypts, the first encrypts. Rotating:
prepend a new key everywhere (web, workers, cron), run this command, then drop the old key. It works
tenant by tenant, inside each tenant's scope (row-level security applies as for any other write), one
transaction per tenant, and can be run again safely.
"""

import click
import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from flask.cli import AppGroup

from kindstride.crypto import secrets_box
from kindstride.db import db
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import tenant_scope

secrets_cli = AppGroup("secrets", help="Secrets encrypted at rest with KINDSTRIDE_SECRETS_KEY.")


def encrypted_columns():
    """Every (model, columns) that holds Fernet ciphertexts. A new encrypted column belongs here."""
    from kindstride.activities.strava_models import StravaConnection
    from kindstride.tenancy.models import TenantSecret

    return [(TenantSecret, ("ciphertext",)), (StravaConnection, ("access_token", "refresh_token"))]


def rotate_tenant(tenant_id) -> int:
    """Re-encrypt one tenant's ciphertexts with the first key; returns how many. Commits on success."""
    box = secrets_box()
    done = 0
    with tenant_scope(tenant_id):
        try:
            for model, columns in encrypted_columns():
                for row in db.session.scalars(sa.select(model).order_by(model.id)):
                    for column in columns:
                        value = getattr(row, column)
                        if value:
                            try:
                                setattr(row, column, box.rotate(value))
                            except InvalidToken:
                                raise click.ClickException(
                                    f"{model.__tablename__} id {row.id} ({column}) cannot be decrypted with any "
                                    f"key of KINDSTRIDE_SECRETS_KEY"
                                ) from None
                            done += 1
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    return done


@secrets_cli.command("rotate")
def rotate_command():
    """Re-encrypt all stored secrets with the first key of KINDSTRIDE_SECRETS_KEY, tenant by tenant."""
    tenants = db.session.execute(sa.select(Tenant.id, Tenant.slug).order_by(Tenant.id)).all()
    db.session.commit()
    failed = []
    for tenant_id, slug in tenants:
        try:
            click.echo(f"{slug}: {rotate_tenant(tenant_id)} secret(s) re-encrypted")
        except click.ClickException as error:
            failed.append(slug)
            click.echo(f"{slug}: not rotated: {error.message}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} tenant(s) not rotated ({', '.join(failed)}); the others are done")
