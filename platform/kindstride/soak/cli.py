"""`kindstride soak --minutes N [--url http://127.0.0.1:PORT]`."""

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
from flask.cli import with_appcontext

from kindstride.soak.load import MIX, Driver, MemorySampler, children, gunicorn_pids, percentile

LOCAL_HOSTS = ("127.0.0.1", "localhost")
MAX_MINUTES = 180


def _sign_in_cookie(base_url, port, host, email, password):
    """A session cookie of the admin, for the admin pages (signing in once: sign-in is rate limited)."""
    import requests

    session = requests.Session()
    headers = {"Host": f"{host}:{port}"}
    page = session.get(f"{base_url}/signin", headers=headers, timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = session.post(f"{base_url}/signin", data={"csrf_token": token, "email": email, "password": password},
                            headers=headers, allow_redirects=False, timeout=30)
    if response.status_code != 302:
        return None
    return response.cookies.get("kindstride_session") or session.cookies.get("kindstride_session")


def _drain(redis_url, seconds=300):
    """Wait for every queued and running job to finish; returns the jobs left (0 when drained)."""
    from redis import Redis
    from rq import Queue
    from rq.registry import StartedJobRegistry

    from kindstride.jobs.queue import QUEUES

    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + seconds
    left = None
    while time.monotonic() < deadline:
        left = sum(Queue(name, connection=connection).count + StartedJobRegistry(name, connection=connection).count
                   for name in QUEUES)
        if left == 0:
            return 0
        time.sleep(1)
    return left


def _gateway_retries(driver, tenants, vnpay, base_url, port):
    """VNPay retries an IPN until it is acknowledged: deliver it for every payment it took that the load left
    unnotified (the donor closed the tab, no IPN yet), so the check below can expect every one credited."""
    import requests

    sent = 0
    for tenant in tenants:
        for reference, (txn_ref, _amount) in driver.expected[tenant.slug].payments.items():
            transaction = vnpay.transactions.get(txn_ref)
            if transaction is None or transaction.status != "00":
                continue
            answer = requests.get(f"{base_url}/payments/vnpay/webhook", params=vnpay.ipn_params(txn_ref), timeout=30,
                                  headers={"Host": f"{tenant.host}:{port}"})
            sent += 1
            code = answer.json().get("RspCode") if answer.status_code == 200 else None
            if code not in ("00", "02"):
                driver.stats.record("donate", answer.status_code, 0.0, 0.0, error=f"IPN answered {answer.status_code}"
                                    f" {code}", detail=f"{reference}: {answer.text[:200]}")
    return sent


def _failed_jobs(redis_url):
    from redis import Redis
    from rq.registry import FailedJobRegistry

    from kindstride.jobs.queue import QUEUES

    connection = Redis.from_url(redis_url)
    return sum(FailedJobRegistry(name, connection=connection).count for name in QUEUES)


@click.command("soak")
@click.option("--minutes", type=click.FloatRange(0.1, MAX_MINUTES), default=10.0, show_default=True,
              help="How long the load runs.")
@click.option("--url", help="A kindstride already served on 127.0.0.1 (the soak then provisions its tenants in the "
              "database this command is configured for, which must be that server's). Without it, the soak starts "
              "its own gunicorn, rq workers, Redis and a fresh PostgreSQL database.")
@click.option("--database-url", help="Owner URL of the PostgreSQL to create the fresh database in "
              "(default: KINDSTRIDE_SOAK_DATABASE_URL, else postgres@127.0.0.1).")
@click.option("--people", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Virtual people, each a thread doing one thing after another.")
@click.option("--runners", type=click.IntRange(4, 2000), default=60, show_default=True,
              help="Runner accounts per tenant (half registered at the start, half register during the soak).")
@click.option("--web-workers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--web-threads", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option("--rq-workers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--max-requests", type=click.IntRange(1, 10_000_000), default=1_000_000, show_default=True,
              help="Stop sooner after this many requests.")
@click.option("--vnpay-port", type=int, default=None,
              help="With --url: run VNPay's test double on this port (the server's KINDSTRIDE_GATEWAY_ENDPOINTS must "
              "point there); without it, no donations are made.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report (Markdown) to this file.")
@click.option("--keep", is_flag=True, help="Keep the fresh database afterwards (it is dropped by default).")
@click.option("--seed", type=int, default=1, show_default=True)
@with_appcontext
def soak_command(minutes, url, database_url, people, runners, web_workers, web_threads, rq_workers, max_requests,
                 vnpay_port, report_path, keep, seed):
    """Drive a mixed load (browse, register, upload, donate, administer) for N minutes and report requests,
    errors by kind, latency percentiles, memory over time and a consistency check of every total."""
    from flask import current_app

    from kindstride.app import create_app
    from kindstride.soak import stack as stacks
    from kindstride.soak.world import Expected, consistency, provision

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # VNPay's double logs every request it serves
    stack = vnpay = None
    started_at = datetime.now(UTC)
    try:
        if url:
            parts = urlsplit(url)
            if parts.hostname not in LOCAL_HOSTS or not parts.port:
                raise click.ClickException("--url must be http://127.0.0.1:PORT (the soak only loads this machine)")
            app, port, base_url = current_app._get_current_object(), parts.port, f"http://127.0.0.1:{parts.port}"
            vnpay = stacks.start_fake_vnpay(vnpay_port) if vnpay_port else None
            redis_url = app.config["REDIS_URL"]
            memory_roles = {"web": gunicorn_pids}
        else:
            click.echo("starting: a fresh database, Redis, VNPay's double ...")
            stack = stacks.prepare(database_url)
            app = create_app(stack.config())
            port, base_url, vnpay, redis_url = stack.port, stack.base_url, stack.vnpay, stack.redis_url
        gateway = {"tmn_code": vnpay.tmn_code, "hash_secret": vnpay.hash_secret} if vnpay else None
        with app.app_context():
            tenants = [provision(app, "soak-a", "127.0.0.1", "VND", runners, gateway),
                       provision(app, "soak-b", "localhost", "VND", runners, gateway)]
        if stack is not None:
            click.echo(f"starting: gunicorn ({web_workers} workers x {web_threads} threads) on {base_url}, "
                       f"{rq_workers} rq workers ...")
            stack.start_web(web_workers, web_threads)
            stack.start_workers(rq_workers)
            memory_roles = {"web": lambda: [p for pid in stack.pids("web") for p in children(pid)],
                            "rq": lambda: stack.pids("rq")}
        cookies = {t.slug: _sign_in_cookie(base_url, port, t.host, t.admin_email, "soak password 2024")
                   for t in tenants}
        driver = Driver(base_url, port, tenants, people, minutes * 60, max_requests, vnpay, cookies, seed=seed)
        driver.expected = {t.slug: Expected() for t in tenants}
        click.echo(f"load: {people} people for {minutes:g} minutes against {base_url} "
                   f"(tenants {', '.join(t.slug for t in tenants)}) ...")
        sampler = MemorySampler(memory_roles).start()
        elapsed = driver.run()
        if vnpay is not None:
            late = _gateway_retries(driver, tenants, vnpay, base_url, port)
            click.echo(f"load done; VNPay's retries: {late} notifications delivered again (those already credited "
                       "are answered 02)")
        click.echo("load done; waiting for the queues to drain ...")
        left = _drain(redis_url) if redis_url else 0
        sampler.stop()
        failed = _failed_jobs(redis_url) if redis_url else 0
        checks = []
        for tenant in tenants:
            for name, ok, detail in consistency(app, tenant, driver.expected[tenant.slug], vnpay):
                checks.append((tenant.slug, name, ok, detail))
        checks.append(("all", "jobs: the queues drained", left == 0, f"{left} jobs left"))
        checks.append(("all", "jobs: none failed", failed == 0, f"{failed} failed jobs"))
        report = render_report(driver, elapsed, sampler, checks, started_at, {
            "command": f"`kindstride {' '.join(sys.argv[1:])}`", "minutes": minutes, "people": people,
            "runners": runners, "url": url or f"{base_url} (own stack)",
            "web": f"gunicorn {web_workers} workers x {web_threads} threads" if stack else "given",
            "rq": f"{rq_workers} workers" if stack else "given", "donations": "VNPay test double" if vnpay else "off"})
        click.echo(report)
        if report_path:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(report)
            click.echo(f"report written to {report_path}")
        if not all(ok for _tenant, _name, ok, _detail in checks) or driver.stats.errors:
            sys.exit(1)
    finally:
        if stack is not None:
            stack.stop(keep=keep)
        elif vnpay is not None:
            vnpay.stop()


def _memory_rows(sampler):
    """Per minute: the mean and largest RSS of one web worker and of one rq worker, in MB."""
    minutes = {}
    for seconds, role, _pid, kb in sampler.samples:
        minutes.setdefault(int(seconds // 60), {}).setdefault(role, []).append(kb / 1024)
    rows = []
    for minute in sorted(minutes):
        row = [str(minute + 1)]
        for role in ("web", "rq"):
            values = minutes[minute].get(role, [])
            row.append(f"{sum(values) / len(values):.1f} / {max(values):.1f}" if values else "-")
        rows.append(row)
    return rows


def _growth(sampler, role):
    samples = [(s, kb) for s, r, _pid, kb in sampler.samples if r == role]
    if len(samples) < 4:
        return None
    cut = max(s for s, _kb in samples) / 3
    first = [kb for s, kb in samples if s <= cut]
    last = [kb for s, kb in samples if s >= 2 * cut]
    if not first or not last:
        return None
    return (sum(last) / len(last)) / (sum(first) / len(first)) - 1


def render_report(driver, elapsed, sampler, checks, started_at, settings):
    stats = driver.stats
    all_latencies = [x for values in stats.latencies.values() for x in values]
    five = sum(count for statuses in stats.statuses.values() for status, count in statuses.items()
               if isinstance(status, int) and status >= 500)
    lines = [
        "# Soak report", "",
        f"Run {started_at:%Y-%m-%d %H:%M} UTC for {elapsed / 60:.1f} minutes: " + ", ".join(
            f"{key} {value}" for key, value in settings.items()) + ".", "",
        "## Requests", "",
        f"{stats.requests} requests ({stats.requests / max(elapsed, 1):.1f}/s), {five} answered 5xx, "
        f"{sum(stats.errors.values())} errors of any kind; latency p50 {percentile(all_latencies, .5) * 1000:.0f} ms, "
        f"p95 {percentile(all_latencies, .95) * 1000:.0f} ms, p99 {percentile(all_latencies, .99) * 1000:.0f} ms.",
        "",
        "| action | share of the mix | requests | p50 ms | p95 ms | p99 ms | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for action in MIX:
        values = stats.latencies.get(action, [])
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(stats.statuses.get(action, {}).items(),
                                                                              key=lambda item: str(item[0])))
        lines.append(f"| {action} | {MIX[action]}% | {len(values)} | {percentile(values, .5) * 1000:.0f} | "
                     f"{percentile(values, .95) * 1000:.0f} | {percentile(values, .99) * 1000:.0f} | {statuses} |")
    lines += ["", "## Errors by kind", ""]
    if stats.errors:
        lines += ["| kind | count | example |", "|---|---|---|"]
        lines += [f"| {kind} | {count} | `{stats.examples.get(kind, '')[:160]}` |"
                  for kind, count in stats.errors.most_common()]
    else:
        lines.append("None.")
    lines += ["", "## Memory over time (RSS per process, mean / largest, MB)", "",
              "| minute | gunicorn worker | rq worker |", "|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in _memory_rows(sampler)]
    web_pids = {pid for _s, role, pid, _kb in sampler.samples if role == "web"}
    for role, label in (("web", "gunicorn workers"), ("rq", "rq workers")):
        growth = _growth(sampler, role)
        if growth is not None:
            lines.append(f"\n{label}: the last third of the run averages {growth * 100:+.1f}% against the first "
                         "third.")
    lines.append(f"\n{len(web_pids)} gunicorn worker processes over the run (gunicorn recycles a worker after "
                 "max_requests, see deploy/gunicorn.conf.py).")
    lines += ["", "## Consistency at the end", "", "| tenant | check | result | detail |", "|---|---|---|---|"]
    lines += [f"| {tenant} | {name} | {'ok' if ok else 'FAILED'} | {detail} |" for tenant, name, ok, detail in checks]
    lines += ["", "```json", json.dumps({"requests": stats.requests, "errors": dict(stats.errors), "5xx": five,
                                         "p99_ms": round(percentile(all_latencies, .99) * 1000),
                                         "consistent": all(ok for *_rest, ok, _detail in checks)}), "```", ""]
    return "\n".join(lines)
