"""The application factory: one explicit step per concern, in the order they depend on each other."""

import logging

from flask import Flask, render_template, request
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFError
from redis import Redis
from sqlalchemy import event
from sqlalchemy.exc import DataError, OperationalError

from kindstride.config import load_config
from kindstride.ops.logging import redact_url

MIGRATIONS_DIR = "migrations"


def create_app(config=None):
    settings = load_config(overrides=config)
    app = Flask("kindstride", instance_path=settings["INSTANCE_PATH"], instance_relative_config=False,
                template_folder="web/templates", static_folder="web/static")
    app.config.update(settings)
    init_logging(app)
    init_database(app)
    init_services(app)
    init_plugins_step(app)
    init_web(app)
    init_cli(app)
    init_ops_step(app)
    return app


def init_logging(app):
    if not app.logger.handlers or app.config["PRODUCTION"]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def init_database(app):
    from kindstride import models  # noqa: F401  (every model, so metadata and migrations see them all)
    from kindstride.config import REPO_ROOT
    from kindstride.db import db, refuse_dead_connection

    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    db.init_app(app)
    Migrate(app, db, directory=str(REPO_ROOT / MIGRATIONS_DIR), compare_type=True)
    if app.config["DATABASE_URL"].startswith("postgresql"):
        with app.app_context():
            # Checked on the pool's first connection, not here: `db upgrade` must run before the role exists.
            event.listen(db.engine, "first_connect", _refuse_privileged_role)
            # The pool's pre-ping, without its round trip (a SQLite file has no server to lose).
            event.listen(db.engine, "checkout", refuse_dead_connection)


def _refuse_privileged_role(dbapi_connection, _record):
    from kindstride.tenancy.rls import APP_ROLE_CHECK, app_role_problems

    cursor = dbapi_connection.cursor()
    cursor.execute(APP_ROLE_CHECK)
    problems = app_role_problems(cursor.fetchone())
    cursor.close()
    if problems:
        raise RuntimeError(
            "KINDSTRIDE_DATABASE_URL connects as a role that " + " and ".join(problems)
            + "; connect as the app role (KINDSTRIDE_DB_APP_ROLE) so row-level security holds"
        )


def init_services(app):
    from kindstride.crypto import init_secrets

    init_secrets(app)
    if app.config["REDIS_URL"]:
        # A Redis that cannot be reached fails fast into the fallbacks. No read timeout: rq's workers block on
        # this client while they wait for jobs.
        app.extensions["kindstride.redis"] = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2)


def init_plugins_step(app):
    from kindstride.plugins import init_plugins

    init_plugins(app)


def init_web(app):
    from kindstride.accounts import members, views
    from kindstride.accounts.session import load_signed_in
    from kindstride.accounts.sso import bp as sso_bp
    from kindstride.accounts.sso import init_sso
    from kindstride.activities import strava_views
    from kindstride.api.setup import init_api
    from kindstride.challenges import admin_views as challenge_admin_views
    from kindstride.challenges import certificate_views
    from kindstride.challenges import views as challenge_views
    from kindstride.fundraising import admin_views as money_admin_views
    from kindstride.fundraising import views as fundraising_views
    from kindstride.i18n import init_i18n
    from kindstride.payments import views as payment_views
    from kindstride.security import init_security
    from kindstride.tenancy.views import bp as operator_bp
    from kindstride.web import views as site_views
    from kindstride.web.converters import init_converters
    from kindstride.web.sites import init_sites

    init_converters(app)
    # Site resolution first: the rate limiter, CSRF and sessions all depend on knowing the tenant.
    init_sites(app)
    app.before_request(load_signed_in)
    init_security(app)
    init_i18n(app)
    init_sso(app)
    for blueprint in (site_views.bp, views.bp, members.bp, sso_bp, operator_bp, fundraising_views.bp, payment_views.bp,
                      certificate_views.bp, strava_views.bp,
                      challenge_views.bp, challenge_admin_views.bp, money_admin_views.bp):
        app.register_blueprint(blueprint)
    init_api(app)
    for code, template in ((403, "forbidden"), (404, "not_found"), (413, "too_large"), (429, "rate_limited")):
        app.register_error_handler(code, _error_page(code, template))
    app.register_error_handler(CSRFError, _error_page(400, "form_expired"))
    app.register_error_handler(DataError, _out_of_range)
    app.register_error_handler(OperationalError, _database_unavailable)


def init_cli(app):
    from kindstride.accounts.cli import operators_cli
    from kindstride.bench.cli import bench_command
    from kindstride.demo import demo_command
    from kindstride.jobs.cli import cron_command, worker_command
    from kindstride.ledger.cli import ledger_cli
    from kindstride.soak.cli import soak_command
    from kindstride.tenancy.cli import tenants_cli

    for command in (tenants_cli, operators_cli, worker_command, cron_command, demo_command, ledger_cli, soak_command,
                    bench_command):
        app.cli.add_command(command)


def init_ops_step(app):
    from kindstride.ops import init_ops

    # Last: it wraps the finished WSGI app (health, readiness and metrics before any tenant code) and
    # configures logging (KINDSTRIDE_LOG_FORMAT).
    init_ops(app)


def _out_of_range(error):
    """A value the database cannot hold (a number past BIGINT): the request was bad, nothing is stored."""
    from kindstride.db import db

    db.session.rollback()
    message = "a number in the request is out of range"
    if request.path.startswith("/api/"):
        return {"code": 422, "status": "Unprocessable Entity", "message": message}, 422
    return render_template("errors/not_found.html"), 404


def _database_unavailable(error):
    """The database cannot be reached (down, restarting, the connection cut): a clean 503 that says to try
    again, never a traceback. The pool replaces the dead connection for the next request."""
    from kindstride.db import db

    app_logger = logging.getLogger("kindstride.app")
    app_logger.warning("database unavailable for %s %s: %s", request.method, redact_url(request.path),
                       type(error.orig).__name__)
    try:
        db.session.rollback()
    except Exception:  # the connection is gone; the session is discarded at teardown anyway
        app_logger.debug("rollback after a lost connection failed", exc_info=True)
    headers = {"Retry-After": "5"}
    if request.path.startswith("/api/"):
        return {"code": 503, "status": "Service Unavailable",
                "message": "the service is briefly unavailable; try again in a few seconds"}, 503, headers
    return render_template("errors/unavailable.html"), 503, headers


def _error_page(code, template):
    def handler(error):
        if request.path.startswith("/api/"):
            # flask-smorest's abort(..., message=...) carries the message that names the field in `data`.
            message = (getattr(error, "data", None) or {}).get("message") or error.description
            return {"code": code, "status": error.name, "message": message}, code
        return render_template(f"errors/{template}.html"), code

    return handler
