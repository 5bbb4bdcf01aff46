"""Finding the real PostgreSQL and Redis this run may use."""

import os
import socket

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# A database of its own per test run (by process id), so two runs on one machine never share queues.
LOCAL_REDIS = f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}"


# CI sets it: a missing service or component fails the run instead of skipping what needs it.
REQUIRE_SERVICES = os.environ.get("KINDSTRIDE_REQUIRE_SERVICES") == "1"


def missing(message):
    """Something this test needs is not on this machine: skip, or fail where REQUIRE_SERVICES is set."""
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def find_postgres(configured):
    """An owner-role URL of a reachable PostgreSQL, or None ("sqlite" asks for the embedded default)."""
    if configured == "sqlite":
        return None
    url = configured or LOCAL_POSTGRES
    parsed = make_url(url)
    if not _port_open(parsed.host or "127.0.0.1", parsed.port or 5432):
        if configured:
            raise RuntimeError(f"KINDSTRIDE_TEST_DATABASE_URL={configured} is not reachable")
        return None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        connection.exec_driver_sql("select 1")
    return url


def find_redis(configured):
    url = configured or LOCAL_REDIS
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if configured:
            raise RuntimeError(f"KINDSTRIDE_TEST_REDIS_URL={configured} is not reachable") from None
        return None
    return url
