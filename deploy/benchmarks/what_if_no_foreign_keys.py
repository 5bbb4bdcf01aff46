"""The bench's bulk import at full scale with and without the foreign keys of activities and activity_results:
the experiment behind REPORT.md's "decisive figure" (issue 6's import ratio).

    .venv/bin/python deploy/benchmarks/what_if_no_foreign_keys.py [activities] [runs]

It generates the bench's event once in a scratch database (the bench's own environment), imports its rows
`runs` times with the keys and `runs` times without them (dropped by the owner in this scratch database only),
emptying the tables and vacuuming the totals between runs, and measures a bare COPY of the same rows after each
import, as the bench does before it.
Never point it at a database you keep: it drops constraints.
"""

import sys
import time
from datetime import UTC, datetime

import psycopg
import sqlalchemy as sa

from kindstride import create_app
from kindstride.activities.bulk import import_activities
from kindstride.bench import environment, generate
from kindstride.bench.run import PEOPLE_PER_ACTIVITY, TEAMS_PER_ACTIVITY, copy_baseline

FOREIGN_KEYS = """SELECT conrelid::regclass::text, conname FROM pg_constraint
                  WHERE contype = 'f' AND conrelid::regclass::text IN ('activities', 'activity_results')"""


def main(activities=1_000_000, runs=2):
    env = environment.prepare()
    try:
        app = create_app(env.app_config())
        environment.migrate(app)
        with app.app_context():
            event = generate.create_event("whatif", int(activities * PEOPLE_PER_ACTIVITY),
                                          int(activities * TEAMS_PER_ACTIVITY), datetime.now(UTC), seed=activities)
            rows = generate.activity_rows(event, activities, seed=activities + 1)
        environment.analyze(env, ("users", "registrations", "teams", "participant_totals", "team_totals"))
        owner = sa.engine.make_url(env.owner_url).set(drivername="postgresql").render_as_string(hide_password=False)
        for keys in ("with", "without"):
            if keys == "without":
                with psycopg.connect(owner, autocommit=True) as connection:
                    for table, name in connection.execute(FOREIGN_KEYS).fetchall():
                        connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for run in range(runs):
                with psycopg.connect(owner, autocommit=True) as connection:
                    connection.execute("TRUNCATE activity_results, activities")
                    connection.execute("UPDATE participant_totals SET score = 0, distance_m = 0, activities = 0, "
                                       "reached_at = NULL")
                    # as a fresh bench database has them: no dead rows left by the previous run, fresh statistics
                    connection.execute("VACUUM ANALYZE participant_totals, team_totals")
                    connection.execute("CHECKPOINT")
                with app.app_context():
                    started = time.perf_counter()
                    summary = import_activities(event.tenant_id, rows, workers=2)
                    seconds = time.perf_counter() - started
                copy = copy_baseline(env.owner_url, event, rows)["rows_per_s"]
                phases = ", ".join(f"{phase} {value:.2f}" for phase, value in summary.seconds.items())
                print(f"{keys} foreign keys, run {run + 1}: {seconds:.2f} s, {len(rows) / seconds:,.0f}/s; "
                      f"COPY {copy:,.0f} rows/s; ratio {len(rows) / seconds / copy:.3f} ({phases})", flush=True)
    finally:
        env.close()


if __name__ == "__main__":
    main(*(int(argument) for argument in sys.argv[1:3]))
