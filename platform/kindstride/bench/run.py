"""One bench run: every scenario measured side by side with its baseline on this machine, in one process that
generates the event, drives the servers it started, and collects one table of figures and ratios.

1. bulk import (the full path: validate, score, persist, update totals) vs a bare COPY of the same rows;
2. live ingest: one activity per HTTP request from 32 clients (a fifth in one hot team) through gunicorn and
   rq workers, then every total checked against a from-scratch recomputation;
3. leaderboard reads (top 50, and my rank) vs a constant-response Flask endpoint served the same way, and vs a
   GROUP BY over the activities;
4. scaling: 1 and 3 at each step of the scale (10k, 100k, 1M activities for uprace);
5. memory: the peak RSS of web and rq worker processes over the whole run.
Figures are printed, never asserted: the goals are shown beside them.
"""

import json
import os
import platform as platform_module
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from kindstride.bench import environment, generate, load, servers

GOALS = {"import_ratio": 0.30, "ingest_rps": 300, "read_ratio": 0.5, "read_p99_ms": 25, "groupby_factor": 100,
         "rss_mb": 250}


@dataclass(frozen=True)
class Scale:
    name: str
    steps: tuple  # activities at each step; people = 35 % of it, teams = 0.5 %
    ingest_seconds: float
    read_seconds: float
    warmup: float
    drain_timeout: float
    job_sample: int = 200  # evaluation jobs timed on forked and on in-process rq workers
    ingest_runners_per_client: int = 40
    ingest_clients: int = 32
    read_clients: int = 4
    rq_workers: int = 2


SCALES = {
    "tiny": Scale("tiny", (400, 1500), ingest_seconds=2, read_seconds=1, warmup=0.3, drain_timeout=120,
                  job_sample=30, ingest_clients=8, rq_workers=2, ingest_runners_per_client=5),
    "small": Scale("small", (1_000, 4_000, 16_000), ingest_seconds=4, read_seconds=2, warmup=0.5,
                   drain_timeout=120, job_sample=60),
    "uprace": Scale("uprace", (10_000, 100_000, 1_000_000), ingest_seconds=20, read_seconds=8, warmup=2,
                    drain_timeout=900, job_sample=600),
}
PEOPLE_PER_ACTIVITY = 0.35  # 350,000 runners, 1,000,000 activities
TEAMS_PER_ACTIVITY = 0.005  # 5,000 teams
TOKENS = 64
WEB_WORKERS, WEB_THREADS = 2, 4
INGEST_CEILING_PER_S = 2000  # requests built beforehand for the ingest: enough for this many a second


def say(message):
    print(message, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, scale, postgres=None, redis=None, keep=False, import_workers=None):
        self.scale = scale
        self.postgres, self.redis_url, self.keep = postgres, redis, keep
        self.import_workers = import_workers or os.cpu_count() or 1
        self.figures = {}
        self.steps = []
        self.notes = []
        self.started = time.perf_counter()

    # ------------------------------------------------------------------------------------------ the run

    def run(self):
        from kindstride import create_app

        self.figures["machine"] = servers.machine()
        self.figures["load_average_before"] = servers.load_average()
        self.env = environment.prepare(self.postgres, self.redis_url, keep=self.keep)
        watch = servers.MemoryWatch().start()
        self.web = self.constant = self.workers = None
        log = open(self.env.instance / "servers.log", "ab")  # noqa: SIM115 (closed in finally)
        try:
            self.app = create_app(self.env.app_config())
            environment.migrate(self.app)
            process_env = self.env.process_env()
            # As deploy/gunicorn.conf.py serves it: 2 workers of 4 threads (gthread); the floor app the same way.
            self.web = servers.Gunicorn("kindstride:create_app()", process_env, log=log, threads=WEB_THREADS)
            self.constant = servers.Gunicorn("kindstride.bench.constant_app:app", process_env, log=log,
                                             threads=WEB_THREADS)
            self.workers = servers.RqWorkers(self.scale.rq_workers, process_env, log=log)
            self.web.wait_ready(load.request_bytes("GET", "/", environment.BASE_DOMAIN))
            self.constant.wait_ready(load.request_bytes("GET", "/constant", "localhost"))
            watch.watch("web", self.web.worker_pids)
            watch.watch("rq", lambda: self.workers.pids())
            events = []
            for activities in self.scale.steps:
                events.append(self.step(activities))
            self.ingest(events[-1])
            self.job_throughput(events[-1], process_env, log)
            watch.stop()
            self.figures["web_worker_peak_rss_mb"] = watch.peak_mb("web")
            self.figures["rq_worker_peak_rss_mb"] = watch.peak_mb("rq")
        except BaseException:
            log.flush()
            say(_tail(self.env.instance / "servers.log"))
            raise
        finally:
            for server in (self.web, self.constant, self.workers):
                if server is not None:
                    server.stop()
            if watch._thread.is_alive():
                watch.stop()
            log.close()
            self.env.close()
        self.figures["load_average_after"] = servers.load_average()
        self.figures["seconds"] = round(time.perf_counter() - self.started, 1)
        self.figures["steps"] = self.steps
        self.figures["notes"] = self.notes
        return self.figures

    # ------------------------------------------------------------------------ one step: import and reads

    def step(self, activities):
        from kindstride.activities.bulk import import_activities

        people = max(20, int(activities * PEOPLE_PER_ACTIVITY))
        teams = max(3, int(activities * TEAMS_PER_ACTIVITY))
        slug = f"scale{activities}"
        say(f"[{self._elapsed()}] {slug}: generating {people:,} people in {teams:,} teams, {activities:,} activities")
        now = datetime.now(UTC).replace(microsecond=0)
        with self.app.app_context():
            event = generate.create_event(slug, people, teams, now, seed=activities)
            rows = generate.activity_rows(event, activities, seed=activities + 1)
            generate.issue_tokens(event, _sample(event.user_ids, TOKENS, seed=activities))
        environment.analyze(self.env, ("users", "registrations", "teams", "participant_totals", "team_totals"))
        say(f"[{self._elapsed()}] {slug}: bare COPY of the same rows")
        copy = copy_baseline(self.env.owner_url, event, rows)
        say(f"[{self._elapsed()}] {slug}: bulk import through the full path ({self.import_workers} workers)")
        with self.app.app_context():
            started, clock = time.perf_counter(), servers.CpuClock()
            summary = import_activities(event.tenant_id, rows, workers=self.import_workers)
            seconds, cpu = time.perf_counter() - started, clock.split()
        environment.analyze(self.env, ("activities", "activity_results", "participant_totals", "team_totals"))
        step = {
            "activities": len(rows), "people": people, "teams": teams,
            "import_seconds": round(seconds, 2), "import_rows_per_s": round(len(rows) / seconds),
            "copy_seconds": round(copy["seconds"], 2), "copy_rows_per_s": round(copy["rows_per_s"]),
            "copy_pk_only_rows_per_s": round(copy["pk_only_rows_per_s"]),
            "import_ratio": round(len(rows) / seconds / copy["rows_per_s"], 3),
            "import_phases_s": {k: round(v, 2) for k, v in summary.seconds.items()},
            # parent, forked workers, the rest of the machine (mostly PostgreSQL), and the cores busy on average
            "import_cpu_s": cpu,
            "import_summary": {"stored": summary.stored, "already_stored": summary.already_stored,
                               "duplicates": summary.duplicates, "results": summary.results,
                               "participants": summary.participants, "teams": summary.teams},
        }
        say(f"[{self._elapsed()}] {slug}: {step['import_rows_per_s']:,} activities/s vs COPY "
            f"{step['copy_rows_per_s']:,} rows/s (ratio {step['import_ratio']}); CPU s: parent {cpu['parent']}, "
            f"workers {cpu['workers']}, PostgreSQL and the rest {cpu['rest']}")
        step.update(self.reads(event))
        self.steps.append(step)
        return event

    def reads(self, event):
        host = f"{event.slug}.{environment.BASE_DOMAIN}"
        tokens = list(event.tokens.values())
        board = load.request_bytes("GET", f"/api/v1/challenges/{generate.CHALLENGE_SLUG}/leaderboard", host)
        me_path = f"/api/v1/challenges/{generate.CHALLENGE_SLUG}/leaderboard/me"
        mine = [load.request_bytes("GET", me_path, host, {"Authorization": f"Bearer {token}"}) for token in tokens]
        constant = load.request_bytes("GET", "/constant", "localhost")
        s = self.scale
        figures = {}
        say(f"[{self._elapsed()}] {event.slug}: leaderboard reads ({s.read_clients} clients, {s.read_seconds} s each)")
        runs = (("board", self.web.port, lambda c, n: board),
                ("me", self.web.port, lambda c, n: mine[(c * 7 + n) % len(mine)]),
                ("constant", self.constant.port, lambda c, n: constant))
        for name, port, request in runs:
            load.run(port, request, s.read_clients, s.warmup)  # every worker has served some of these first
            result = load.run(port, request, s.read_clients, s.read_seconds)
            figures.update(result.figures(name))
            if result.errors:
                self.notes.append(f"{event.slug} {name}: {result.errors} errors, e.g. {result.bodies[:1]}")
        figures["groupby_ms"] = round(self.group_by_ms(event), 1)
        figures["board_ratio_rps"] = _ratio(figures["board_rps"], figures["constant_rps"])
        figures["me_ratio_rps"] = _ratio(figures["me_rps"], figures["constant_rps"])
        figures["board_ratio_p50"] = _ratio(figures["constant_p50_ms"], figures["board_p50_ms"])
        figures["board_ratio_p99"] = _ratio(figures["constant_p99_ms"], figures["board_p99_ms"])
        figures["groupby_factor"] = _ratio(figures["groupby_ms"], figures["board_p50_ms"], digits=1)
        say(f"[{self._elapsed()}] {event.slug}: board {figures['board_rps']} rps p50 {figures['board_p50_ms']} ms "
            f"p99 {figures['board_p99_ms']} ms; me {figures['me_rps']} rps; constant {figures['constant_rps']} rps;"
            f" GROUP BY {figures['groupby_ms']} ms")
        return figures

    def group_by_ms(self, event, repeat=3):
        """The leaderboard computed the naive way: a GROUP BY over the event's activities, as the app role."""
        from kindstride.db import db
        from kindstride.tenancy.scope import tenant_scope

        query = sa.text("""SELECT a.user_id, sum(a.distance_m) AS distance FROM activities a
                           WHERE a.tenant_id = :tenant AND a.duplicate_of_id IS NULL
                           GROUP BY a.user_id ORDER BY distance DESC LIMIT 50""")
        times = []
        with self.app.app_context(), tenant_scope(event.tenant_id):
            for _ in range(repeat):
                started = time.perf_counter()
                db.session.execute(query, {"tenant": event.tenant_id}).all()
                times.append((time.perf_counter() - started) * 1000)
            db.session.rollback()
        return sorted(times)[len(times) // 2]

    # ---------------------------------------------------------------------------------------- live ingest

    def ingest(self, event):
        from redis import Redis

        s = self.scale
        clients = s.ingest_clients
        hot = max(1, clients // 5)
        # Each client posts for many runners in turn (a club tool, a device vendor's sync): a fifth of the
        # clients for the members of one team, the others each for runners of their own.
        with self.app.app_context():
            hot_members = [u for u, t in zip(event.user_ids, event.team_of, strict=True) if t == event.hot_team_id]
            others = _sample([u for u, t in zip(event.user_ids, event.team_of, strict=True)
                              if t != event.hot_team_id and u not in event.tokens],
                             s.ingest_runners_per_client * (clients - hot), seed=12)
            token_of = dict(zip(hot_members + others, generate.issue_tokens(event, hot_members + others),
                                strict=True))
        runners = [hot_members[c::hot] for c in range(hot)]
        runners += [others[c::clients - hot] for c in range(clients - hot)]
        host = f"{event.slug}.{environment.BASE_DOMAIN}"
        now = datetime.now(UTC).replace(microsecond=0)
        first_start = now - timedelta(hours=70)
        fastest, slowest, paused_s = 280, 600, 20  # s per km; pauses per run
        distances = [1000 + step * 37.0 for step in range(5)]
        # A runner's runs never overlap one another (no run is a second recording of another): each starts a
        # minute after the longest one could have ended.
        spacing = timedelta(seconds=max(distances) / 1000 * slowest + paused_s + 60)
        rounds = int(timedelta(hours=69) / spacing)
        rnd = random.Random(13)
        paces = {u: rnd.uniform(fastest, slowest) for u in token_of}

        def request(client, number):
            mine = runners[client]
            runner, round_ = mine[number % len(mine)], number // len(mine)
            if round_ >= rounds:
                return None
            pace = paces[runner]
            distance = distances[number % len(distances)]
            moving = distance / 1000 * pace
            start = first_start + spacing * round_ + timedelta(seconds=client)
            body = json.dumps({"sport": "run", "start": start.isoformat(), "moving_s": round(moving, 1),
                               "elapsed_s": round(moving + paused_s, 1), "distance_m": distance, "has_gps": True,
                               "title": "Bench run", "split_paces_s_per_km": [round(pace, 1)]}).encode()
            return load.request_bytes("POST", "/api/v1/activities", host,
                                      {"Authorization": f"Bearer {token_of[runner]}",
                                       "Content-Type": "application/json"}, body)

        # Every request is built beforehand: the generator shares the machine, and its JSON is not the server's work.
        per_client = s.ingest_seconds * INGEST_CEILING_PER_S // clients + 1
        prepared = [[r for r in (request(c, n) for n in range(per_client)) if r is not None] for c in range(clients)]

        def next_request(client, number):
            return prepared[client][number] if number < len(prepared[client]) else None

        chosen = list(token_of)
        say(f"[{self._elapsed()}] ingest: {clients} clients ({hot} in one team) for {s.ingest_seconds} s")
        redis = Redis.from_url(self.env.redis_url)
        started = time.perf_counter()
        result = load.run(self.web.port, next_request, clients, s.ingest_seconds, warmup=0, expect=(201,))
        accepted = result.ok(201)
        load_seconds = time.perf_counter() - started
        drained = self.wait_for_jobs(redis, s.drain_timeout)
        total_seconds = time.perf_counter() - started
        if result.errors:
            self.notes.append(f"ingest: {result.errors} requests not accepted, e.g. {result.bodies[:1]}")
        self.figures.update({
            "ingest_clients": clients, "ingest_hot_clients": hot, "ingest_accepted": accepted,
            "ingest_rps": round(accepted / result.seconds, 1), "ingest_p50_ms": _r(result.percentile(0.5)),
            "ingest_p99_ms": _r(result.percentile(0.99)), "ingest_errors": result.errors,
            "ingest_drained": drained, "ingest_drain_s": round(total_seconds - load_seconds, 1),
            "ingest_evaluated_per_s": round(accepted / total_seconds, 1) if drained else None,
            "ingest_failed_jobs": self.failed_jobs(redis),
        })
        say(f"[{self._elapsed()}] ingest: {self.figures['ingest_rps']} accepted/s; queue drained "
            f"{self.figures['ingest_drain_s']} s after the load; checking every total")
        self.figures.update(self.verify(event, chosen))

    def job_throughput(self, event, process_env, log):
        """The same evaluation jobs on `kindstride worker` (a forked work horse per job) and on as many
        in-process workers (rq's SimpleWorker): what the fork per job costs."""
        from redis import Redis

        from kindstride.activities.evaluation import evaluate_activity
        from kindstride.activities.models import Activity
        from kindstride.db import db
        from kindstride.jobs import enqueue
        from kindstride.tenancy.scope import tenant_scope

        redis = Redis.from_url(self.env.redis_url)
        with self.app.app_context(), tenant_scope(event.tenant_id):
            ids = db.session.scalars(sa.select(Activity.id).order_by(Activity.id.desc())
                                     .limit(self.scale.job_sample)).all()
            db.session.rollback()

        def timed():
            with self.app.app_context(), tenant_scope(event.tenant_id):
                for activity_id in ids:
                    enqueue(evaluate_activity, activity_id)  # outside a transaction: queued at once
            started = time.perf_counter()
            drained = self.wait_for_jobs(redis, self.scale.drain_timeout)
            return round(len(ids) / (time.perf_counter() - started), 1) if drained else None

        say(f"[{self._elapsed()}] jobs: {len(ids)} evaluations on forked workers, then on in-process workers")
        self.figures["jobs_forked_per_s"] = timed()
        self.workers.stop()
        self.workers = servers.RqWorkers(self.scale.rq_workers, process_env, log=log, in_process=True)
        self.workers.wait_registered(redis)
        self.figures["jobs_in_process_per_s"] = timed()
        self.figures["jobs_sample"] = len(ids)
        self.figures["rq_workers"] = self.scale.rq_workers
        say(f"[{self._elapsed()}] jobs: {self.figures['jobs_forked_per_s']}/s forked, "
            f"{self.figures['jobs_in_process_per_s']}/s in-process")

    def wait_for_jobs(self, redis, timeout):
        """Until no job is queued and no batched call waits or runs (a drain job that only waits for more calls
        is done with its work)."""
        from rq import Queue

        from kindstride.jobs.queue import QUEUES, batched_calls_pending

        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            busy = sum(Queue(q, connection=redis).count for q in QUEUES) + batched_calls_pending(redis)
            quiet = quiet + 1 if busy == 0 else 0
            if quiet >= 3:
                return True
            time.sleep(0.2)
        return False

    def failed_jobs(self, redis):
        from rq.registry import FailedJobRegistry

        from kindstride.jobs.queue import QUEUES

        return sum(FailedJobRegistry(q, connection=redis).count for q in QUEUES)

    def verify(self, event, ingest_users):
        """Every total against a from-scratch recomputation: participant totals from their results, team totals
        from their members (SQL, independent of the code that maintains them), and the ingest users' verdicts
        and duplicates judged again from nothing by the bulk planner."""
        from kindstride.activities.bulk import recompute
        from kindstride.db import db
        from kindstride.tenancy.scope import tenant_scope

        with self.app.app_context(), tenant_scope(event.tenant_id):
            participants = db.session.execute(sa.text("""
                SELECT count(*) FROM participant_totals t LEFT JOIN (
                    SELECT registration_id, coalesce(sum(score), 0) AS score,
                           coalesce(sum(counted_distance_m), 0) AS distance, count(counted_at) AS activities,
                           max(counted_at) AS reached_at
                    FROM activity_results WHERE tenant_id = :t GROUP BY registration_id) r
                  ON r.registration_id = t.registration_id
                WHERE t.tenant_id = :t AND (t.score <> coalesce(r.score, 0)
                   OR t.distance_m <> coalesce(r.distance, 0) OR t.activities <> coalesce(r.activities, 0)
                   OR t.reached_at IS DISTINCT FROM r.reached_at)"""), {"t": event.tenant_id}).scalar()
            teams = db.session.execute(sa.text("""
                SELECT count(*) FROM team_totals tt LEFT JOIN (
                    SELECT team_id, count(*) AS members, sum(score) AS score, sum(distance_m) AS distance,
                           max(reached_at) AS reached_at
                    FROM participant_totals WHERE tenant_id = :t AND team_id IS NOT NULL GROUP BY team_id) m
                  ON m.team_id = tt.team_id
                WHERE tt.tenant_id = :t AND (tt.members <> coalesce(m.members, 0)
                   OR tt.score <> coalesce(m.score, 0) OR tt.distance_m <> coalesce(m.distance, 0)
                   OR tt.reached_at IS DISTINCT FROM m.reached_at)"""), {"t": event.tenant_id}).scalar()
            checked, different = recompute(event.tenant_id, ingest_users)
            stored = db.session.execute(sa.text("SELECT count(*) FROM participant_totals WHERE tenant_id = :t"),
                                        {"t": event.tenant_id}).scalar()
            db.session.rollback()
        return {"verify_participant_totals": stored, "verify_participant_mismatches": participants,
                "verify_team_mismatches": teams, "verify_rejudged_results": checked,
                "verify_result_mismatches": different}

    def _elapsed(self):
        return f"{time.perf_counter() - self.started:6.1f}s"


def copy_baseline(owner_url, event, rows):
    """The import's baseline: COPY the same rows, bare, into a table with the activities' columns and indexes (the
    owner's connection: no row-level security, no foreign keys, no rules); and into one with a primary key only."""
    import psycopg

    from kindstride.activities.bulk import ACTIVITY_TYPES

    url = sa.engine.make_url(owner_url).set(drivername="postgresql").render_as_string(hide_password=False)
    # the stored form: split paces as JSON text (json receives text; the import sends float8[] instead)
    columns = {"tenant_id": "int8", **{k: v for k, v in ACTIVITY_TYPES.items() if k != "id"}, "split_paces": "text"}
    # The rows an import stores: a re-upload (the same fingerprint again) is stored once.
    distinct = {(r.user_id, r.fingerprint): r for r in reversed(rows)}
    data = [(event.tenant_id, r.user_id, r.source, r.sport, r.title, r.start, r.elapsed_s, r.moving_s,
             r.distance_m, r.has_gps, r.is_indoor, json.dumps(list(r.split_paces)), r.device, r.file_name,
             r.fingerprint, r.external_id, r.owner_only, None, r.received_at) for r in distinct.values()]
    result = {}
    with psycopg.connect(url, autocommit=True) as connection:
        for label, ddl in (
            ("rows_per_s", "CREATE TABLE {t} (LIKE activities INCLUDING INDEXES)"),
            ("pk_only_rows_per_s", "CREATE TABLE {t} (LIKE activities); ALTER TABLE {t} ADD PRIMARY KEY (id)"),
        ):
            table = f"bench_copy_{label.split('_')[0]}"
            connection.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in ddl.format(t=table).split("; "):
                connection.execute(statement)
            connection.execute(f"ALTER TABLE {table} ALTER id ADD GENERATED BY DEFAULT AS IDENTITY")
            started = time.perf_counter()
            with connection.transaction(), connection.cursor().copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(list(columns.values()))
                for row in data:
                    copy.write_row(row)
            seconds = time.perf_counter() - started
            connection.execute(f"DROP TABLE {table}")
            result[label] = len(data) / seconds
            if label == "rows_per_s":
                result["seconds"] = seconds
    return result


def _sample(items, count, seed):
    items = list(items)
    random.Random(seed).shuffle(items)
    return items[:count]


def _ratio(numerator, denominator, digits=3):
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, digits)


def _r(value):
    return None if value is None else round(value, 2)


def _tail(path, lines=40):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------- the table


def table(figures):
    """The printed table: figure, value, baseline, ratio, goal."""
    rows = []
    for step in figures["steps"]:
        n = f"{step['activities']:,}"
        rows.append((f"1 import {n}", "activities/s (full path)", f"{step['import_rows_per_s']:,}",
                     f"COPY {step['copy_rows_per_s']:,}/s", _fmt(step["import_ratio"]),
                     f">= {GOALS['import_ratio']}"))
        rows.append((f"4 import {n}", "seconds", f"{step['import_seconds']}", f"COPY {step['copy_seconds']} s", "",
                     "linear"))
        cpu = step.get("import_cpu_s") or {}
        rows.append((f"4 import {n}", "CPU s: parent / workers / PostgreSQL+rest",
                     f"{cpu.get('parent')} / {cpu.get('workers')} / {cpu.get('rest')}",
                     f"{cpu.get('cores_busy')} of {figures['machine'].get('nproc')} cores busy", "", ""))
        rows.append((f"3 board {n}", "rps (top 50)", f"{step['board_rps']}", f"const {step['constant_rps']}",
                     _fmt(step["board_ratio_rps"]), f">= {GOALS['read_ratio']}"))
        rows.append((f"3 board {n}", "p50 / p99 ms", f"{step['board_p50_ms']} / {step['board_p99_ms']}",
                     f"const {step['constant_p50_ms']} / {step['constant_p99_ms']}",
                     f"{_fmt(step['board_ratio_p50'])} / {_fmt(step['board_ratio_p99'])}",
                     f"p99 < {GOALS['read_p99_ms']}"))
        rows.append((f"3 my rank {n}", "rps; p50 / p99 ms",
                     f"{step['me_rps']}; {step['me_p50_ms']} / {step['me_p99_ms']}", f"const {step['constant_rps']}",
                     _fmt(step["me_ratio_rps"]), f">= {GOALS['read_ratio']}"))
        rows.append((f"3 GROUP BY {n}", "ms per query", f"{step['groupby_ms']}", f"board p50 {step['board_p50_ms']}",
                     f"{_fmt(step['groupby_factor'])}x", f">= {GOALS['groupby_factor']}x"))
    f = figures
    rows.append(("2 live ingest", "accepted activities/s", f"{f.get('ingest_rps')}",
                 f"{f.get('ingest_clients')} clients", "", f">= {GOALS['ingest_rps']}"))
    rows.append(("2 live ingest", "p50 / p99 ms", f"{f.get('ingest_p50_ms')} / {f.get('ingest_p99_ms')}", "", "", ""))
    rows.append(("2 live ingest", "evaluated/s (to queue drained)", f"{f.get('ingest_evaluated_per_s')}",
                 f"drain {f.get('ingest_drain_s')} s", "", ""))
    rows.append(("2 rq jobs", "evaluations/s: forked / in-process",
                 f"{f.get('jobs_forked_per_s')} / {f.get('jobs_in_process_per_s')}",
                 f"{f.get('rq_workers')} workers, {f.get('jobs_sample')} jobs",
                 _fmt(_ratio(f.get("jobs_forked_per_s"), f.get("jobs_in_process_per_s"))), ""))
    rows.append(("2 recomputation", "mismatching totals / verdicts",
                 f"{f.get('verify_participant_mismatches')} + {f.get('verify_team_mismatches')} / "
                 f"{f.get('verify_result_mismatches')}",
                 f"of {f.get('verify_participant_totals')} / {f.get('verify_rejudged_results')}", "", "0"))
    rows.append(("5 memory", "web worker peak RSS MB", f"{f.get('web_worker_peak_rss_mb')}", "", "",
                 f"< {GOALS['rss_mb']}"))
    rows.append(("5 memory", "rq worker peak RSS MB", f"{f.get('rq_worker_peak_rss_mb')}", "", "",
                 f"< {GOALS['rss_mb']}"))
    headers = ("scenario", "figure", "value", "baseline", "ratio", "goal")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines), headers, rows


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value):
    return "" if value is None else f"{value}"


def describe_machine():
    """nproc, free -g and lscpu, for the report."""
    out = {"python": sys.version.split()[0], "platform": platform_module.platform()}
    for name, command in (("nproc", ["nproc"]), ("free", ["free", "-g"]), ("lscpu", ["lscpu"])):
        try:
            out[name] = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out[name] = None
    return out
