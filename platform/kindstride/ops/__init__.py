"""Running kindstride for real: health and readiness, metrics, structured logs, `kindstride web` and
`kindstride secrets rotate`. deploy/ holds the configuration that uses them; deploy/OPERATIONS.md explains.

`init_ops(app)` is the app factory's last step: it wraps the finished WSGI app, so /healthz, /readyz and
/metrics answer before any tenant code runs.
"""

from werkzeug.middleware.proxy_fix import ProxyFix

from kindstride.config import ConfigError


def init_ops(app):
    from kindstride.ops.health import init_health
    from kindstride.ops.logging import configure_logging
    from kindstride.ops.metrics import init_metrics
    from kindstride.ops.redis import init_ops_redis
    from kindstride.ops.secrets import secrets_cli
    from kindstride.ops.web import web_command

    configure_logging(app)
    init_ops_redis(app)
    init_metrics(app)
    init_health(app)
    hops = _trusted_proxies(app.config["TRUSTED_PROXIES"])
    if hops:
        # X-Forwarded-For/-Proto from that many proxies: the client's address (rate limits, logs) and https.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    for command in (web_command, secrets_cli):
        app.cli.add_command(command)


def _trusted_proxies(value):
    try:
        hops = int(value)
    except (TypeError, ValueError):
        hops = -1
    if hops < 0:
        raise ConfigError(f"KINDSTRIDE_TRUSTED_PROXIES must be a whole number of proxies (0 or more), not {value!r}")
    return hops
