"""The `kindstride` command: the Flask CLI of the app, with the commands create_app registers."""

import click
from flask.cli import FlaskGroup

from kindstride.app import create_app


@click.group(cls=FlaskGroup, create_app=lambda: create_app(), add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
def main():
    """kindstride: virtual sport challenges that raise money."""


if __name__ == "__main__":
    main()
