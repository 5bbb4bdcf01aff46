"""`python -m kindstride.bench.worker`: an rq worker that runs jobs in its own process (rq's SimpleWorker,
which kindstride.jobs.cli.make_worker builds with fork=False) instead of forking a work horse per job.

The bench runs it beside `kindstride worker` to show what the fork per job costs: a forked horse starts
with a new database connection, an empty SQL compilation cache and an empty ruleset cache every time.
"""

from kindstride import create_app
from kindstride.jobs.cli import make_worker


def main():
    app = create_app()
    with app.app_context():
        make_worker(fork=False).work(with_scheduler=False)


if __name__ == "__main__":
    main()
