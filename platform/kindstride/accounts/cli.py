import click
from flask.cli import AppGroup

from kindstride.accounts.services import AccountError, create_operator
from kindstride.db import db

operators_cli = AppGroup("operators", help="Platform operators.")


@operators_cli.command("create")
@click.argument("email")
@click.option("--name", default="")
@click.password_option()
def create_operator_command(email, name, password):
    """Create a platform operator account (signs in on the bare base domain)."""
    try:
        operator = create_operator(email, name, password)
    except AccountError as error:
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"operator {operator.email} created")
