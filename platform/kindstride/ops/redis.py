"""The Redis client of health checks and metrics: the app's KINDSTRIDE_REDIS_URL, with short timeouts, so a
Redis that hangs makes /readyz answer 503 instead of hanging the probe."""

from redis import Redis

EXTENSION = "kindstride.ops.redis"
TIMEOUT_S = 2


def init_ops_redis(app):
    url = app.config["REDIS_URL"]
    app.extensions[EXTENSION] = (
        Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S) if url else None
    )


def ops_redis(app) -> Redis | None:
    return app.extensions.get(EXTENSION)
