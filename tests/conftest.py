"""Test fixtures: the app on PostgreSQL + Redis when they are reachable (or required), else SQLite.

KINDSTRIDE_TEST_DATABASE_URL / KINDSTRIDE_TEST_REDIS_URL name the services (owner role for
PostgreSQL; "sqlite" / "off" force the embedded defaults); without them, 127.0.0.1 is probed.
KINDSTRIDE_REQUIRE_SERVICES=1 turns a missing service into a failed run instead of a SQLite / in-process
fallback.
"""

import contextvars
import os
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from kindstride import create_app
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.support.mailbox import start_mailbox
from tests.support.services import REQUIRE_SERVICES, find_postgres, find_redis

BASE_DOMAIN = "kindstride.test"
APP_ROLE = "kindstride_app"


@pytest.fixture(scope="session")
def backend(tmp_path_factory):
    """The database and Redis URLs for this run; a fresh PostgreSQL database is migrated once."""
    configured_db = os.environ.get("KINDSTRIDE_TEST_DATABASE_URL")
    configured_redis = os.environ.get("KINDSTRIDE_TEST_REDIS_URL")
    # "sqlite" and "off" force the embedded defaults even where the services run.
    postgres = find_postgres(configured_db)
    redis_url = None if configured_redis == "off" else find_redis(configured_redis)
    if REQUIRE_SERVICES and (postgres is None or redis_url is None):
        pytest.exit(f"KINDSTRIDE_REQUIRE_SERVICES=1 but PostgreSQL={postgres} Redis={redis_url}: start them", 3)
    instance = tmp_path_factory.mktemp("instance")
    if postgres is None:
        url = f"sqlite:///{instance / 'test.sqlite'}"
        owner_url = url
    else:
        name = f"kindstride_test_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        owner_url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
        url = make_url(owner_url).set(username=APP_ROLE, password=None).render_as_string(hide_password=False)
    settings = {"DATABASE_URL": url, "MIGRATE_DATABASE_URL": owner_url, "REDIS_URL": redis_url,
                "INSTANCE_PATH": str(instance)}
    app = create_app(_config(settings))
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    yield settings
    if postgres is not None:
        db_name = make_url(owner_url).database
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        admin.dispose()


def _config(settings, **extra):
    return {
        "ENV": "test",
        "DRAIN_LINGER_SECONDS": 0,  # a drain neither waits for calls nor paces its batches (test_jobs checks both)
        "DRAIN_BATCH_INTERVAL_SECONDS": 0,
        "SECRET_KEY": "test-secret-key",
        "BASE_DOMAIN": BASE_DOMAIN,
        "PREFERRED_URL_SCHEME": "http",
        "TENANTS_DIR": str(Path(__file__).resolve().parents[1] / "tenants"),
        "TESTING": True,
        **settings,
        **extra,
    }


def _empty_database(settings):
    engine = sa.create_engine(settings["MIGRATE_DATABASE_URL"], poolclass=sa.pool.NullPool)
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


@pytest.fixture
def mailbox():
    box = start_mailbox()
    yield box
    box.stop()


@pytest.fixture
def make_app(backend, mailbox):
    """Build an app on the test backend; every test starts with empty tables and an empty Redis."""
    _empty_database(backend)
    if backend["REDIS_URL"]:
        import redis

        redis.Redis.from_url(backend["REDIS_URL"]).flushdb()
    apps = []

    def factory(**extra):
        app = create_app(_config(backend, SMTP_HOST="127.0.0.1", SMTP_PORT=mailbox.port, **extra))
        app.test_client_class = SiteClient
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    app = make_app()
    with app.app_context():
        yield app


class SiteClient(FlaskClient):
    """A test client for one site: `app.test_client()` then `.on("slug")` (or `.on(None)` for the operator)."""

    host = BASE_DOMAIN

    def on(self, slug_or_host):
        if slug_or_host is None:
            self.host = BASE_DOMAIN
        elif "." in slug_or_host:
            self.host = slug_or_host
        else:
            self.host = f"{slug_or_host}.{BASE_DOMAIN}"
        return self

    def open(self, *args, **kwargs):
        kwargs.setdefault("base_url", f"http://{self.host}")
        # An empty context, as in a real server: the request gets its own app context, `g`, database
        # session and tenant scope instead of sharing the test's.
        return contextvars.Context().run(super().open, *args, **kwargs)

    def csrf_token(self, path):
        page = self.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        assert match, f"no CSRF token on {path} ({page.status})"
        return match.group(1)

    def submit(self, path, data, form_path=None, **kwargs):
        """POST a form the way a browser does: with the CSRF token of the page that shows it."""
        data = {"csrf_token": self.csrf_token(form_path or path), **data}
        return self.post(path, data=data, **kwargs)


@pytest.fixture
def tenants(app):
    """Two tenants, as a dict slug -> id: 'alpha' (English, USD) and 'beta' (Vietnamese, VND)."""
    from kindstride.tenancy.services import create_tenant

    alpha = create_tenant("alpha", "Alpha Corp", "en", "USD", "UTC")
    beta = create_tenant("beta", "Công ty Beta", "vi", "VND", "Asia/Ho_Chi_Minh")
    return {"alpha": alpha.id, "beta": beta.id}


@pytest.fixture
def make_user(app):
    """Create a confirmed account with roles on a tenant; returns its id."""
    from kindstride.accounts import services
    from kindstride.db import utcnow

    def factory(tenant_id, email, roles=("participant",), password="correct horse battery"):
        with tenant_scope(tenant_id):
            user = services.sign_up(email, email.split("@")[0].title(), password)
            user.email_confirmed_at = utcnow()
            for role in roles:
                services.grant_role(user, role)
            db.session.commit()
            return user.id

    return factory


def sign_in(client, email, password="correct horse battery"):
    response = client.submit("/signin", {"email": email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response
