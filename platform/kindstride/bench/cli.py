import json
import shlex
import signal
import sys
from pathlib import Path

import click

from kindstride.bench.run import SCALES, Bench, describe_machine, markdown_table, table


@click.command("bench")
@click.option("--scale", type=click.Choice(sorted(SCALES)), default="small", show_default=True,
              help="tiny (tests), small (CI, under 2 minutes) or uprace (the largest real event: 350,000 runners, "
                   "1,000,000 activities).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every figure as JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table (and the machine) as markdown here.")
@click.option("--database", "postgres", metavar="URL",
              help="PostgreSQL owner URL where the bench may create (and drop) a database of its own "
                   "(default: KINDSTRIDE_BENCH_DATABASE_URL, else postgres@127.0.0.1:5432).")
@click.option("--redis", "redis_url", metavar="URL",
              help="A Redis database for the bench alone (default: a private redis-server it starts).")
@click.option("--import-workers", type=int, default=None, help="Processes for the bulk import (default: nproc).")
@click.option("--keep", is_flag=True, help="Keep the bench database afterwards.")
def bench_command(scale, json_path, markdown_path, postgres, redis_url, import_workers, keep):
    """Measure kindstride at the scale of a real event, as ratios against this machine's own limits.

    It creates a fresh database (migrated, used as the app role), starts gunicorn (2 workers), a constant-response
    Flask app served the same way and rq workers, generates the event, runs every scenario and prints one table.
    Figures are printed, never asserted.
    """
    # Stopped (a CI timeout, ^C from a wrapper): still stop the servers and drop the database on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    command = "kindstride bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    figures = Bench(SCALES[scale], postgres, redis_url, keep, import_workers).run()
    figures = {"command": command.strip(), "scale": scale, **figures, "machine_details": describe_machine()}
    text, headers, rows = table(figures)
    click.echo(text)
    for note in figures["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"({figures['seconds']} s; load average {figures['load_average_before']} -> "
               f"{figures['load_average_after']})")
    figures["table"] = [dict(zip(headers, row, strict=True)) for row in rows]
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        machine = figures["machine"]
        markdown_path.write_text(
            f"`{figures['command']}` on {machine.get('nproc')} CPUs ({machine.get('cpu')}), "
            f"{machine.get('memory_gib')} GiB; {figures['seconds']} s; load average "
            f"{figures['load_average_before']} -> {figures['load_average_after']}\n\n"
            + markdown_table(headers, rows) + "\n")
