import os

import click
from flask import current_app
from flask.cli import with_appcontext
from rq import Queue, SimpleWorker, Worker
from rq.cron import CronScheduler

from kindstride.db import db
from kindstride.jobs.periodic import SCHEDULE, fan_out
from kindstride.jobs.queue import QUEUES, job_path, redis_connection
from kindstride.jobs.runner import run_job


def _require_redis():
    if not current_app.config["REDIS_URL"]:
        raise click.ClickException("KINDSTRIDE_REDIS_URL is not set: without Redis, jobs run in-process")
    return redis_connection()


def make_worker(queues=QUEUES, fork=True):
    connection = _require_redis()
    worker_class = Worker if fork else SimpleWorker
    return worker_class([Queue(name, connection=connection) for name in queues], connection=connection)


@click.command("worker")
@click.option("--queue", "queues", multiple=True, type=click.Choice(QUEUES),
              help="Queues to serve, highest priority first (default: all).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@with_appcontext
def worker_command(queues, burst):
    """Run an rq worker for kindstride jobs."""
    worker = make_worker(queues or QUEUES)
    engine = db.engine
    # A forked work horse must not share the parent's database connections.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    worker.work(burst=burst, with_scheduler=True)


@click.command("cron")
@with_appcontext
def cron_command():
    """Run rq's cron scheduler for kindstride's periodic jobs (run exactly one)."""
    scheduler = CronScheduler(connection=_require_redis(), name="kindstride-cron")
    for func, seconds in SCHEDULE:
        scheduler.register(run_job, "low", args=(job_path(fan_out), None, [job_path(func)]), interval=seconds,
                           name=job_path(func))
    scheduler.start()
