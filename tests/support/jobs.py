"""Running queued jobs in tests: a real rq worker (burst mode) when Redis is configured."""

from kindstride.jobs.cli import make_worker


def run_queued_jobs(app):
    """Without Redis the jobs already ran in-process when their transaction committed."""
    if app.config["REDIS_URL"]:
        with app.app_context():
            make_worker(fork=False).work(burst=True)
