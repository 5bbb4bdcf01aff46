"""gunicorn configuration of `kindstride web` (gunicorn -c deploy/gunicorn.conf.py 'kindstride.app:create_app()').

Everything that differs between machines comes from the environment (deploy/OPERATIONS.md lists it):
KINDSTRIDE_WEB_BIND, KINDSTRIDE_WEB_WORKERS, KINDSTRIDE_WEB_THREADS, KINDSTRIDE_WEB_TIMEOUT, and
KINDSTRIDE_LOG_FORMAT for the access log. Web processes keep no state of their own: any instance can
answer any request for any tenant, so instances are added and removed behind the load balancer at will.
"""

import os
import shutil
import tempfile
from pathlib import Path


def _env(name, default):
    return os.environ.get(name) or default


control_socket_disable = True  # gunicorn >= 25: no shared per-user control socket (instances share a host)
bind = [address.strip() for address in _env("KINDSTRIDE_WEB_BIND", "0.0.0.0:8000").split(",")]
workers = int(_env("KINDSTRIDE_WEB_WORKERS", "2"))
threads = int(_env("KINDSTRIDE_WEB_THREADS", "4"))
worker_class = "gthread"  # threads serve slow clients and uploads while the worker stays responsive

# A request that takes longer than this gets its worker restarted (the client sees 502 from the proxy).
timeout = int(_env("KINDSTRIDE_WEB_TIMEOUT", "60"))
# On SIGTERM: stop accepting, finish the requests in flight for up to this long, then exit.
graceful_timeout = 30
# Idle keep-alive between a proxy and gunicorn; the proxy's own idle timeout towards us must be shorter.
keepalive = 5
# Recycle workers now and then, so a slow leak never grows without bound (the jitter spreads restarts).
max_requests = 2000
max_requests_jitter = 200

# Load the app once in the master: a configuration or plugin error stops the start instead of looping
# worker boots, and workers share the loaded code. post_fork makes each worker open its own connections.
preload_app = True

# Logs on stdout/stderr for the container runtime; JSON lines when KINDSTRIDE_LOG_FORMAT=json.
accesslog = "-"
errorlog = "-"
logger_class = "kindstride.ops.web.GunicornLogger"
access_log_format = ('%(h)s "%(r)s" %(s)s %(b)s %(M)sms host=%({host}i)s tenant=%({kindstride.tenant}e)s '
                     'request=%({x-request-id}o)s "%(a)s"')

# Worker heartbeats in memory, not on a container's overlay /tmp.
if Path("/dev/shm").is_dir():  # noqa: S108 (a path gunicorn's documentation recommends)
    worker_tmp_dir = "/dev/shm"  # noqa: S108

# Prometheus: several worker processes, so prometheus_client keeps its numbers in files that /metrics adds
# up. The directory is this instance's own (never share one between instances) and starts empty. It is set
# here, before the app (and so prometheus_client) is loaded.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_own_metrics_dir = not _metrics_dir
if _own_metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="kindstride-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
else:
    Path(_metrics_dir).mkdir(parents=True, exist_ok=True)
    for _stale in Path(_metrics_dir).glob("*.db"):
        _stale.unlink()


def post_fork(server, worker):
    """A worker starts: drop the database connections it inherited from the master (preload_app)."""
    app = getattr(worker.app, "callable", None)
    if app is not None:
        from kindstride.ops.web import dispose_inherited_connections

        dispose_inherited_connections(app)


def child_exit(server, worker):
    """A worker ended: prometheus_client stops counting its live gauges (its counters stay added up)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
