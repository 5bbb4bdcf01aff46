"""Where a bench run happens: a fresh PostgreSQL database (migrated as the owner, used as the app role, as in
production), a private Redis server, and the URLs and environment the servers it starts are given."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BASE_DOMAIN = "bench.localhost"


class BenchEnvironmentError(RuntimeError):
    pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Environment:
    owner_url: str  # migrations, the COPY baseline, ANALYZE
    app_url: str  # everything the platform does
    redis_url: str
    instance: Path
    database: str
    admin_url: str
    redis_process: subprocess.Popen | None = None
    keep: bool = False

    def app_config(self, **extra):
        return {"DATABASE_URL": self.app_url, "MIGRATE_DATABASE_URL": self.owner_url, "REDIS_URL": self.redis_url,
                "INSTANCE_PATH": str(self.instance), "SECRET_KEY": "bench-secret-key", "BASE_DOMAIN": BASE_DOMAIN,
                "ENV": "development", **extra}

    def process_env(self):
        """Environment variables for gunicorn and `kindstride worker` subprocesses."""
        secrets_key = (self.instance / "secrets_key")
        env = dict(os.environ)
        env.update({
            "KINDSTRIDE_DATABASE_URL": self.app_url, "KINDSTRIDE_MIGRATE_DATABASE_URL": self.owner_url,
            "KINDSTRIDE_REDIS_URL": self.redis_url, "KINDSTRIDE_INSTANCE_PATH": str(self.instance),
            "KINDSTRIDE_SECRET_KEY": "bench-secret-key", "KINDSTRIDE_BASE_DOMAIN": BASE_DOMAIN,
            "KINDSTRIDE_ENV": "development",
        })
        if secrets_key.exists():
            env["KINDSTRIDE_SECRETS_KEY"] = secrets_key.read_text().strip()
        return env

    def close(self):
        if self.redis_process is not None:
            self.redis_process.terminate()
            try:
                self.redis_process.wait(10)
            except subprocess.TimeoutExpired:
                self.redis_process.kill()
        if not self.keep:
            admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            admin.dispose()
            shutil.rmtree(self.instance, ignore_errors=True)


def prepare(postgres_url=None, redis_url=None, app_role="kindstride_app", keep=False) -> Environment:
    """Create the database and start Redis (unless one is named). The caller migrates (it needs an app)."""
    admin_url = postgres_url or os.environ.get("KINDSTRIDE_BENCH_DATABASE_URL") or DEFAULT_POSTGRES
    if not admin_url.startswith("postgresql"):
        raise BenchEnvironmentError("the bench needs PostgreSQL: pass --database postgresql+psycopg://owner@host/db")
    database = f"kindstride_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {database}")
    except sa.exc.OperationalError as error:
        raise BenchEnvironmentError(f"cannot reach PostgreSQL at {make_url(admin_url)!r}: {error}") from None
    finally:
        admin.dispose()
    owner_url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    app_url = make_url(owner_url).set(username=app_role, password=None).render_as_string(hide_password=False)
    instance = Path(tempfile.mkdtemp(prefix="kindstride-bench-"))
    process = None
    if redis_url is None:
        redis_url, process = _start_redis()
    return Environment(owner_url, app_url, redis_url, instance, database, admin_url, process, keep)


def _start_redis():
    """A private redis-server, so the bench's queues can never meet anyone else's."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchEnvironmentError("redis-server is not installed: pass --redis redis://host:port/db")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--loglevel", "warning"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    from redis import Redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            Redis.from_url(url).ping()
            return url, process
        except Exception:
            time.sleep(0.05)
    process.kill()
    raise BenchEnvironmentError("redis-server did not start")


def migrate(app):
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


def analyze(env, tables=None):
    """Fresh planner statistics after a bulk load (the owner's job; autovacuum would do it later)."""
    engine = sa.create_engine(env.owner_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        for table in tables or ("users", "registrations", "teams", "participant_totals", "team_totals",
                                "activities", "activity_results"):
            connection.exec_driver_sql(f"VACUUM ANALYZE {table}")
    engine.dispose()
