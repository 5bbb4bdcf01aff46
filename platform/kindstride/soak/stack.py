"""The stack a soak runs against when it starts its own: a fresh PostgreSQL database (migrated, the app role
with row-level security), a private redis-server, VNPay's test double, gunicorn as deploy/ runs it and rq
workers, all on 127.0.0.1 and all stopped (the database dropped) at the end."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from kindstride.config import REPO_ROOT

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent
GUNICORN_CONF = REPO_ROOT / "deploy" / "gunicorn.conf.py"


class StackError(RuntimeError):
    pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, seconds, step=0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # noqa: S110 (still starting: asked again below)
            pass
        time.sleep(step)
    return False


def start_fake_vnpay(port=None):
    """VNPay's test double from tests/support (a checkout of the repository has it), or None without it."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from tests.support import fake_vnpay
    except ImportError:
        return None
    if port:
        from werkzeug import serving

        fake_vnpay.make_server = lambda host, _port, app, **kwargs: serving.make_server(host, port, app, **kwargs)
    return fake_vnpay.start_fake_vnpay()


@dataclass
class Stack:
    """A running stack; `env` is the environment its processes (and this one's app) share."""

    owner_url: str
    app_url: str
    admin_url: str
    database: str
    redis_url: str
    port: int
    instance: Path
    env: dict
    vnpay: object = None
    processes: dict = field(default_factory=dict)  # role -> [Popen]
    logs: Path | None = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def config(self):
        """create_app() overrides for an app instance of this process on the same database and Redis."""
        return {"DATABASE_URL": self.app_url, "MIGRATE_DATABASE_URL": self.owner_url, "REDIS_URL": self.redis_url,
                "INSTANCE_PATH": str(self.instance), "SECRET_KEY": self.env["KINDSTRIDE_SECRET_KEY"],
                "SECRETS_KEY": self.env["KINDSTRIDE_SECRETS_KEY"], "PLUGINS": self.env["KINDSTRIDE_PLUGINS"],
                "GATEWAY_ENDPOINTS": self.env["KINDSTRIDE_GATEWAY_ENDPOINTS"],
                "BASE_DOMAIN": self.env["KINDSTRIDE_BASE_DOMAIN"]}

    def pids(self, role):
        return [p.pid for p in self.processes.get(role, []) if p.poll() is None]

    def start_web(self, workers, threads):
        env = {**self.env, "KINDSTRIDE_WEB_BIND": f"127.0.0.1:{self.port}", "KINDSTRIDE_WEB_WORKERS": str(workers),
               "KINDSTRIDE_WEB_THREADS": str(threads)}
        if GUNICORN_CONF.is_file():
            argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "kindstride.app:create_app()"]
        else:
            argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                    "--threads", str(threads), "--worker-class", "gthread", "kindstride.app:create_app()"]
        log = open(self.logs / "gunicorn.log", "wb")  # noqa: SIM115 (closed with the process)
        self.processes["web"] = [subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True)]

        def answers():
            import requests

            return requests.get(f"{self.base_url}/api/v1/tenant", timeout=2).status_code < 500

        if not wait_for(answers, 60):
            raise StackError(f"gunicorn did not answer on {self.base_url}; see {self.logs / 'gunicorn.log'}")

    def start_workers(self, count):
        self.processes["rq"] = []
        for number in range(count):
            log = open(self.logs / f"rq-{number}.log", "wb")  # noqa: SIM115 (closed with the process)
            self.processes["rq"].append(subprocess.Popen([str(BIN / "kindstride"), "worker"], env=self.env,
                                                         cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                         start_new_session=True))

    def stop(self, keep=False):
        for role in ("web", "rq", "redis"):
            for process in self.processes.get(role, []):
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in self.processes.get(role, []):
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
        if self.vnpay is not None:
            self.vnpay.stop()
        if not keep:
            admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            admin.dispose()
            shutil.rmtree(self.instance, ignore_errors=True)


def prepare(postgres_url=None, redis_url=None, app_role="kindstride_app", plugins="core_rules,stripe,vnpay"):
    """Create and migrate a fresh database, start Redis (unless named) and VNPay's double; nothing served yet."""
    from cryptography.fernet import Fernet

    admin_url = postgres_url or os.environ.get("KINDSTRIDE_SOAK_DATABASE_URL") or DEFAULT_POSTGRES
    if not admin_url.startswith("postgresql"):
        raise StackError("the soak needs PostgreSQL: --database-url postgresql+psycopg://owner@127.0.0.1/postgres")
    host = make_url(admin_url).host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost"):
        raise StackError(f"the soak only runs against services on 127.0.0.1, not {host}")
    database = f"kindstride_soak_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {database}")
    except sa.exc.OperationalError as error:
        raise StackError(f"cannot reach PostgreSQL at {make_url(admin_url)!r}: {error}") from None
    finally:
        admin.dispose()
    owner_url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    app_url = make_url(owner_url).set(username=app_role, password=None).render_as_string(hide_password=False)
    instance = Path(tempfile.mkdtemp(prefix="kindstride-soak-"))
    logs = instance / "logs"
    logs.mkdir()
    processes = {}
    if redis_url is None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is not installed: pass --redis-url redis://127.0.0.1:PORT/DB")
        redis_port = free_port()
        processes["redis"] = [subprocess.Popen(
            [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--loglevel", "warning"], stdout=subprocess.DEVNULL, start_new_session=True)]
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        from redis import Redis

        if not wait_for(lambda: Redis.from_url(redis_url).ping(), 10):
            raise StackError("redis-server did not start")
    vnpay = start_fake_vnpay()
    endpoints = f"vnpay.payment_url={vnpay.payment_url},vnpay.api_url={vnpay.api_url}" if vnpay else ""
    env = {**os.environ, "KINDSTRIDE_DATABASE_URL": app_url, "KINDSTRIDE_MIGRATE_DATABASE_URL": owner_url,
           "KINDSTRIDE_REDIS_URL": redis_url, "KINDSTRIDE_SECRET_KEY": uuid.uuid4().hex * 2,
           "KINDSTRIDE_SECRETS_KEY": Fernet.generate_key().decode(), "KINDSTRIDE_INSTANCE_PATH": str(instance),
           "KINDSTRIDE_PLUGINS": plugins, "KINDSTRIDE_GATEWAY_ENDPOINTS": endpoints,
           "KINDSTRIDE_BASE_DOMAIN": "soak.test", "KINDSTRIDE_LOG_LEVEL": "WARNING"}
    stack = Stack(owner_url, app_url, admin_url, database, redis_url, free_port(), instance, env, vnpay, processes,
                  logs)
    from flask_migrate import upgrade

    from kindstride.app import create_app

    app = create_app(stack.config())
    with app.app_context():
        upgrade()
    return stack
