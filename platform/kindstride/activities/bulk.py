"""Importing many activities at once: the per-activity rules, applied set by set.

`import_activities(tenant_id, rows)` ends in exactly the state that adding the same rows one by one through
`add_activity` (in the order they were received) and running every `evaluate_activity` job would leave:

- a row whose fingerprint this person already has is not stored again;
- overlapping recordings of one run count once, decided as `resolve_overlaps` decides, activity by activity
  in the order received (ids are handed out in that order, so the tie-breaks are the same);
- every verdict comes from the same pure `judge()`, with the same-day context (daily limits) of the
  participant's accepted activities that start earlier that local day, and a moderator's decision stands
  as `record` keeps it;
- participant totals are recomputed from their results and team totals from their members, as
  `refresh_participant` and `refresh_team` do, but in one statement per table.

The rules run in Python, one activity at a time; everything the database does is set-based: the rows are
copied into temporary tables (COPY is refused on tables under row-level security) and inserted with one
INSERT ... SELECT per table. With `workers` > 1 on PostgreSQL the people are split into shards that forked
processes judge and write in parallel, each in its own transaction; they commit together once every shard
is written (a failure in any shard rolls every shard back).

It is meant for imports (an event's history, a club's archive, a device vendor's batch): run it when the
same people are not also being evaluated one activity at a time, as both would judge the same days.

Its judging of a person's days (PlannedActivity, Judging, Membership, Writes, judge_membership) is also what
queued evaluations and re-evaluations run, a few people at a time (activities.evaluation.judge_people).
"""

import gc
import json
import math
import multiprocessing
import os
import time
import traceback
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

import sqlalchemy as sa

from kindstride.activities.evaluation import (
    facts_of,
    judge,
    local_day,
    prechecked,
    reason_dicts,
    resolved_ruleset,
    standing_verdict,
)
from kindstride.activities.models import ACCEPTED, SOURCE_RANK, Activity, ActivityResult
from kindstride.challenges.models import CLOSED, Challenge, Registration
from kindstride.db import db, utcnow
from kindstride.leaderboards import ranking
from kindstride.rules.contract import SPORTS, ChallengeContext
from kindstride.tenancy.scope import RLS_SETTING, tenant_scope

# column -> type in the temporary tables that binary COPY fills
ACTIVITY_TYPES = {"id": "int8", "user_id": "int8", "source": "text", "sport": "text", "title": "text",
                  "start": "timestamptz", "elapsed_s": "float8", "moving_s": "float8", "distance_m": "float8",
                  "has_gps": "bool", "is_indoor": "bool", "split_paces": "float8[]", "device": "text",
                  "file_name": "text", "fingerprint": "text", "external_id": "text", "owner_only": "bool",
                  "duplicate_of_id": "int8", "received_at": "timestamptz"}
RESULT_TYPES = {"activity_id": "int8", "challenge_id": "int8", "registration_id": "int8", "ruleset_version": "int4",
                "status": "text", "reasons": "text", "score": "int8", "counted_distance_m": "int8", "local_day": "date",
                "counted_at": "timestamptz"}
ACTIVITY_COLUMNS, RESULT_COLUMNS = tuple(ACTIVITY_TYPES), tuple(RESULT_TYPES)
UPDATE_TYPES = {"id": "int8", **{column: RESULT_TYPES[column] for column in RESULT_COLUMNS[3:]}}
EMPTY_REASONS = "[]"


class BulkImportError(ValueError):
    def __init__(self, errors):
        super().__init__("; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""))
        self.errors = errors


class ActivityRow(NamedTuple):
    """One activity to import: the fields of an Activity, with the moment it was received."""

    user_id: int
    source: str
    sport: str
    start: object  # aware datetime
    elapsed_s: float
    moving_s: float
    distance_m: float
    fingerprint: str
    received_at: object  # aware datetime
    title: str = ""
    has_gps: bool = False
    is_indoor: bool = False
    split_paces: tuple = ()
    external_id: str | None = None
    device: str | None = None
    file_name: str | None = None
    owner_only: bool = False


@dataclass
class ImportSummary:
    received: int = 0
    stored: int = 0
    already_stored: int = 0  # same fingerprint as an activity this person already has
    duplicates: int = 0  # stored, but a recording of a run that another recording counts for
    results: dict = field(default_factory=dict)  # status -> results written
    participants: int = 0
    teams: int = 0
    seconds: dict = field(default_factory=dict)  # phase -> wall seconds (of the slowest worker)

    def timed(self, phase, started):
        self.seconds[phase] = max(self.seconds.get(phase, 0.0), time.perf_counter() - started)
        return time.perf_counter()

    def add(self, other):
        for phase, seconds in other.seconds.items():
            self.seconds[phase] = max(self.seconds.get(phase, 0.0), seconds)
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.participants += other.participants
        for status, count in other.results.items():
            self.results[status] = self.results.get(status, 0) + count


class PlannedActivity:
    """An activity while it is being imported (new) or looked at again (already stored)."""

    __slots__ = ("id", "user_id", "source", "sport", "start", "elapsed_s", "moving_s", "distance_m", "has_gps",
                 "is_indoor", "split_paces", "received_at", "fingerprint", "duplicate_of_id", "stored_duplicate_of_id",
                 "row", "end")

    def __init__(self, id, user_id, source, sport, start, elapsed_s, moving_s, distance_m, has_gps, is_indoor,
                 split_paces, received_at, fingerprint, duplicate_of_id=None, row=None):
        self.id, self.user_id, self.source, self.sport, self.fingerprint = id, user_id, source, sport, fingerprint
        self.start, self.elapsed_s, self.moving_s, self.distance_m = start, elapsed_s, moving_s, distance_m
        self.has_gps, self.is_indoor, self.split_paces, self.received_at = has_gps, is_indoor, split_paces, received_at
        self.duplicate_of_id = self.stored_duplicate_of_id = duplicate_of_id
        self.row = row  # the ActivityRow of a new activity; None for one already stored
        self.end = start + timedelta(seconds=elapsed_s)


class Judging:
    """What judging needs of one challenge: its window, time zone and resolved ruleset."""

    def __init__(self, challenge, ruleset):
        self.challenge_id = challenge.id
        self.timezone = challenge.timezone
        self.counting_start, self.counting_end = challenge.counting_start, challenge.counting_end
        self.cutoff = challenge.counting_start - timedelta(days=7)  # evaluate_activity: far outside, not judged
        self.version = challenge.ruleset_version
        self.ruleset = ruleset
        self.base_context = ChallengeContext(timezone=self.timezone, counting_start=self.counting_start,
                                             counting_end=self.counting_end)


class Membership(NamedTuple):
    """A registration the person's activities are judged in."""

    judging: Judging
    registration_id: int
    team_id: int | None
    counts_from: object


@dataclass
class _Shard:
    """Everything one worker needs: people, their new rows, and what is stored about them."""

    users: list = field(default_factory=list)  # user ids, ascending
    new: dict = field(default_factory=lambda: defaultdict(list))  # user -> [(id, ActivityRow)] in id order
    stored: dict = field(default_factory=lambda: defaultdict(list))  # user -> [PlannedActivity]
    results: dict = field(default_factory=dict)  # (registration id, activity id) -> stored result tuple


@dataclass
class Writes:
    activities: list = field(default_factory=list)  # (PlannedActivity) new, in (user, start) order
    changed: list = field(default_factory=list)  # (activity id, duplicate_of_id) of stored activities
    results: list = field(default_factory=list)  # RESULT_COLUMNS tuples
    result_updates: list = field(default_factory=list)  # (result id, *RESULT_COLUMNS[3:])
    registrations: set = field(default_factory=set)
    registrations_with_stored_results: set = field(default_factory=set)
    summary: ImportSummary = field(default_factory=ImportSummary)


# ---------------------------------------------------------------------------------------------- planning


def _check(rows):
    errors = []
    for index, row in enumerate(rows):
        if row.source not in SOURCE_RANK:
            errors.append(f"rows[{index}].source: must be one of {', '.join(SOURCE_RANK)}")
        if row.sport not in SPORTS:
            errors.append(f"rows[{index}].sport: must be one of {', '.join(SPORTS)}")
        if row.start.tzinfo is None or row.received_at.tzinfo is None:
            errors.append(f"rows[{index}]: start and received_at must be timezone-aware")
        if not row.fingerprint or len(row.fingerprint) > 64:
            errors.append(f"rows[{index}].fingerprint: 1 to 64 characters")
        try:  # one sum for the usual row: NaN, infinity or a non-number anywhere spoils it, and is named below
            plain = math.isfinite(row.elapsed_s + row.moving_s + row.distance_m + sum(row.split_paces))
        except TypeError:
            plain = False
        if plain:
            continue
        if not _finite((row.elapsed_s, row.moving_s, row.distance_m)):
            errors.append(f"rows[{index}]: elapsed_s, moving_s and distance_m must be finite numbers")
        elif not _finite(row.split_paces):
            errors.append(f"rows[{index}].split_paces: finite numbers only")
    if errors:
        raise BulkImportError(errors)


def _finite(values):
    """Whether these are all finite numbers: NaN or infinity would be judged and stored as nonsense."""
    try:
        return all(map(math.isfinite, values))
    except TypeError:  # not a number
        return False


def _as_rows(rows):
    return [row if isinstance(row, ActivityRow) else ActivityRow(**row) for row in rows]


def plan_user(user_id, new, stored, memberships, stored_results, writes):
    """Dedup and resolve overlaps of one person's new activities, and judge them (and the stored ones they
    affect); or, for someone with nothing stored, return their activities for _judge_fresh to judge with other
    people's (every rule asked about many activities at once).

    new: [(id, ActivityRow)] in id (= received) order; stored: [PlannedActivity]; stored_results: (registration id,
    activity id) -> (result id, status, local_day, decided_by_id, ruleset_version).
    """
    pool = list(stored)
    fingerprints = {a.fingerprint for a in pool}
    by_start = sorted(pool, key=_start_key)  # for finding overlaps without looking at every recording
    starts = [a.start for a in by_start]
    longest = max((a.end - a.start for a in pool), default=timedelta(0))
    triggered = []  # activities whose evaluation the per-activity path would have queued
    for activity_id, row in new:
        if row.fingerprint in fingerprints:
            writes.summary.already_stored += 1
            continue
        fingerprints.add(row.fingerprint)
        activity = PlannedActivity(activity_id, user_id, row.source, row.sport, row.start, row.elapsed_s, row.moving_s,
                        row.distance_m, row.has_gps, row.is_indoor, row.split_paces, row.received_at,
                        row.fingerprint, None, row)
        # resolve_overlaps: the recordings overlapping this one (start before its end, end after its start;
        # none starts earlier than the longest recording before it), then the best of them counts.
        cluster = [activity]
        for index in range(bisect_left(starts, activity.start - longest), bisect_left(starts, activity.end)):
            other = by_start[index]
            if other.end > activity.start:
                cluster.append(other)
        primary = activity if len(cluster) == 1 else min(cluster, key=_rank_key)
        for member in cluster:
            wanted = None if member is primary else primary.id
            if member.duplicate_of_id != wanted or member is activity:
                member.duplicate_of_id = wanted
                triggered.append(member)
        pool.append(activity)
        position = bisect_right(starts, activity.start)
        starts.insert(position, activity.start)
        by_start.insert(position, activity)
        longest = max(longest, activity.end - activity.start)
    for activity in pool:
        if activity.row is not None:
            writes.activities.append(activity)
            writes.summary.stored += 1
            writes.summary.duplicates += activity.duplicate_of_id is not None
        elif activity.duplicate_of_id != activity.stored_duplicate_of_id:
            writes.changed.append((activity.id, activity.duplicate_of_id))
    if not stored:
        return pool
    if triggered:
        for membership in memberships:
            judge_membership(membership, pool, triggered, stored_results, writes)
    return None


def _start_key(activity):
    return activity.start


def _rank_key(activity):
    return SOURCE_RANK[activity.source], activity.received_at, activity.id


def _day_order(activity):
    return activity.start, activity.id


def _judge_fresh(fresh, writes):
    """_judge_new for many people with nothing stored ([(memberships, pool)]): each challenge's day-independent
    rules are asked about all their activities at once (judge() needs no more of them), then each day is judged."""
    by_judging = defaultdict(list)  # Judging -> [(membership, pool)]
    for memberships, pool in fresh:
        for membership in memberships:
            by_judging[membership.judging].append((membership, pool))
    for judging, entries in by_judging.items():
        cutoff = judging.cutoff
        # what _judge_one asks the rules about: not far before the window, and no standing verdict
        candidates = [a for membership, pool in entries for a in pool
                      if a.start >= cutoff and standing_verdict(a, membership.counts_from) is None]
        checked = dict(zip([a.id for a in candidates],
                           prechecked(candidates, judging.ruleset, judging.base_context), strict=True))
        for membership, pool in entries:
            _judge_new(membership, pool, writes, checked)


def _judge_new(membership, pool, writes, checked):
    """judge_membership for someone with nothing stored: every activity is new (so triggered, with no result
    to keep), and each local day is judged whole, in start order. checked: activity id -> (facts, reasons of
    the day-independent rules), from prechecked()."""
    m = membership.judging
    cutoff = m.cutoff
    by_day = {}
    for activity in pool:
        if activity.start >= cutoff:
            day = local_day(m, activity.start)
            same_day = by_day.get(day)
            if same_day is None:
                by_day[day] = [activity]
            else:
                same_day.append(activity)
    for day, activities in by_day.items():
        if len(activities) > 1:
            activities.sort(key=_day_order)
        count, distance = 0, 0
        for activity in activities:
            if _judge_one(membership, activity, day, count, distance, None, writes, checked) == ACCEPTED:
                count += 1
                distance += activity.distance_m
    if by_day:
        writes.registrations.add(membership.registration_id)


def judge_membership(membership, pool, triggered, stored_results, writes):
    m = membership.judging
    cutoff = m.cutoff
    tz_day = {}

    def day_of(activity):
        day = tz_day.get(activity.id)
        if day is None:
            day = tz_day[activity.id] = local_day(m, activity.start)
        return day

    first_triggered = {}  # local day -> earliest triggered start that day
    for activity in triggered:
        if activity.start < cutoff:
            continue
        day = day_of(activity)
        if day not in first_triggered or activity.start < first_triggered[day]:
            first_triggered[day] = activity.start
    if not first_triggered:
        return
    triggered_ids = {a.id for a in triggered}
    by_day = defaultdict(list)
    for activity in pool:
        stored = stored_results.get((membership.registration_id, activity.id)) if stored_results else None
        if activity.id in triggered_ids:
            if activity.start >= cutoff:
                by_day[day_of(activity)].append((activity, stored))
        elif stored is not None and stored[2] in first_triggered:
            by_day[stored[2]].append((activity, stored))
    for day, members in by_day.items():
        members.sort(key=lambda pair: (pair[0].start, pair[0].id))
        count, distance = 0, 0
        from_start = first_triggered[day]
        for activity, stored in members:
            rejudge = activity.id in triggered_ids or activity.start > from_start
            if not rejudge or (stored is not None and stored[3] and stored[4] == m.version
                               and activity.duplicate_of_id is None):
                status = stored[1]  # kept as it is (an earlier result, or a moderator's decision)
            else:
                status = _judge_one(membership, activity, day, count, distance, stored, writes)
            if status == ACCEPTED:
                count += 1
                distance += activity.distance_m
        writes.registrations.add(membership.registration_id)


def _judge_one(membership, activity, day, count, distance, stored, writes, checked=None):
    m = membership.judging
    verdict = standing_verdict(activity, membership.counts_from)
    if verdict is None:
        context = m.base_context if count == 0 else ChallengeContext(
            timezone=m.timezone, counting_start=m.counting_start, counting_end=m.counting_end,
            same_day_count=count, same_day_distance_m=float(distance))
        facts, reasons = (facts_of(activity), None) if checked is None else checked[activity.id]
        verdict = judge(facts, m.ruleset, context, reasons)
    reasons = json.dumps(reason_dicts(verdict.reasons)) if verdict.reasons else EMPTY_REASONS
    values = (m.version, verdict.status, reasons, verdict.score, verdict.counted_distance_m, day,
              activity.end if verdict.score > 0 else None)  # counted_at(): the same start + elapsed
    if stored is None:
        writes.results.append((activity.id, m.challenge_id, membership.registration_id, *values))
    else:
        writes.result_updates.append((stored[0], *values))
    results = writes.summary.results
    results[verdict.status] = results.get(verdict.status, 0) + 1
    return verdict.status


FRESH_BATCH = 2000  # people with nothing stored whose activities are judged together (_judge_fresh)


def _plan_shard(shard, memberships_of):
    started = time.perf_counter()
    writes = Writes()
    fresh = []
    for user_id in shard.users:
        memberships = memberships_of.get(user_id, ())
        pool = plan_user(user_id, shard.new.get(user_id, ()), shard.stored.get(user_id, ()), memberships,
                         shard.results, writes)
        if pool and memberships:
            fresh.append((memberships, pool))
            if len(fresh) == FRESH_BATCH:
                _judge_fresh(fresh, writes)
                fresh = []
    _judge_fresh(fresh, writes)
    writes.summary.participants = len(writes.registrations)
    writes.registrations_with_stored_results = {registration for registration, _activity in shard.results}
    writes.summary.timed("judge", started)
    return writes


# ------------------------------------------------------------------------------------------ loading state


def _memberships(user_ids):
    """user id -> [Membership] for active registrations in challenges that are not closed."""
    pairs = db.session.execute(
        sa.select(Registration.user_id, Registration.id, Registration.team_id, Registration.counts_from,
                  Registration.challenge_id)
        .join(Challenge, Challenge.id == Registration.challenge_id)
        .where(Registration.status == "active", Challenge.status != CLOSED)
        .order_by(Registration.user_id, Challenge.id)
    ).all()
    wanted = set(user_ids)
    challenges, out = {}, defaultdict(list)
    for user_id, registration_id, team_id, counts_from, challenge_id in pairs:
        if user_id not in wanted:
            continue
        if challenge_id not in challenges:
            challenge = db.session.get(Challenge, challenge_id)
            ruleset = resolved_ruleset(challenge)
            challenges[challenge_id] = Judging(challenge, ruleset) if ruleset is not None else None
        judging = challenges[challenge_id]
        if judging is None:
            continue  # scoring is frozen: a missing strategy never falls back
        out[user_id].append(Membership(judging, registration_id, team_id, counts_from))
    aggregations = {cid: j.ruleset.team_aggregation for cid, j in challenges.items() if j is not None}
    return out, aggregations


def _stored_state(tenant_id, user_ids, shard_of):
    """The activities (into their shards) and results already stored for these people."""
    from kindstride.activities.evaluation import PLANNED_COLUMNS, stored_results

    if not user_ids:
        return {}
    c = Activity.__table__.c
    if _postgres():
        users = sa.select(sa.func.unnest(sa.cast(sorted(user_ids), sa.ARRAY(sa.BigInteger))))
    else:
        users = sorted(user_ids)
    connection = db.session.connection()
    stored_ids = []
    for a in connection.execute(sa.select(*(c[name] for name in PLANNED_COLUMNS))
                                .where(c.tenant_id == tenant_id, c.user_id.in_(users))):
        shard_of(a.user_id).stored[a.user_id].append(PlannedActivity(*a))
        stored_ids.append(a.id)
    return stored_results(connection, tenant_id, stored_ids) if stored_ids else {}


def _postgres():
    return db.engine.dialect.name == "postgresql"


def _allocate_ids(count):
    """Activity ids for `count` new rows, ascending (handed out in the order the rows were received)."""
    if not count:
        return []
    if _postgres():
        ids = db.session.execute(sa.text("SELECT array_agg(nextval('activities_id_seq')) "
                                         "FROM generate_series(1, :n)"), {"n": count}).scalar()
        return sorted(ids)
    first = (db.session.execute(sa.text("SELECT max(id) FROM activities")).scalar() or 0) + 1
    return list(range(first, first + count))


# --------------------------------------------------------------------------------------------- writing


def _temp_table(cursor, name, types):
    columns = ", ".join(f"{column} {kind}" for column, kind in types.items())
    cursor.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")


def _copy(cursor, table, types, rows):
    """Binary COPY: nothing is formatted as text on this side or parsed on the server's."""
    with cursor.copy(f"COPY {table} ({', '.join(types)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types.values()))
        for row in rows:
            copy.write_row(row)


def _activity_tuple(a):
    r = a.row
    return (a.id, a.user_id, r.source, r.sport, r.title, r.start, r.elapsed_s, r.moving_s, r.distance_m, r.has_gps,
            r.is_indoor, list(r.split_paces), r.device, r.file_name, r.fingerprint, r.external_id,
            r.owner_only, a.duplicate_of_id, r.received_at)


def _write_postgres(connection, tenant_id, writes, now):
    """Write one shard's rows through a psycopg connection in an open transaction scoped to the tenant."""
    timed, started = writes.summary.timed, time.perf_counter()
    cursor = connection.cursor()
    cursor.execute("SET LOCAL synchronous_commit = off")
    _temp_table(cursor, "bulk_activities", ACTIVITY_TYPES)
    _temp_table(cursor, "bulk_results", RESULT_TYPES)
    _copy(cursor, "bulk_activities", ACTIVITY_TYPES, map(_activity_tuple, writes.activities))
    _copy(cursor, "bulk_results", RESULT_TYPES, writes.results)
    started = timed("copy", started)
    columns = ", ".join(ACTIVITY_COLUMNS)
    selected = columns.replace("split_paces", "to_json(split_paces)")  # sent as float8[]: no JSON text to make
    cursor.execute(f"INSERT INTO activities (tenant_id, {columns}) SELECT %s, {selected} FROM bulk_activities",  # noqa: S608
                   (tenant_id,))
    started = timed("insert activities", started)
    if writes.changed:
        types = {"id": "int8", "duplicate_of_id": "int8"}
        _temp_table(cursor, "bulk_changed", types)
        _copy(cursor, "bulk_changed", types, writes.changed)
        cursor.execute("UPDATE activities a SET duplicate_of_id = c.duplicate_of_id FROM bulk_changed c "
                       "WHERE a.tenant_id = %s AND a.id = c.id", (tenant_id,))
    columns = ", ".join(RESULT_COLUMNS)
    selected = columns.replace("reasons", "reasons::json")
    cursor.execute(f"INSERT INTO activity_results (tenant_id, {columns}, evaluated_at) "  # noqa: S608
                   f"SELECT %s, {selected}, %s FROM bulk_results", (tenant_id, now))
    started = timed("insert results", started)
    if writes.result_updates:
        _temp_table(cursor, "bulk_result_updates", UPDATE_TYPES)
        _copy(cursor, "bulk_result_updates", UPDATE_TYPES, writes.result_updates)
        cursor.execute("""UPDATE activity_results r SET ruleset_version = u.ruleset_version, status = u.status,
            reasons = u.reasons::json, score = u.score, counted_distance_m = u.counted_distance_m,
            local_day = u.local_day, counted_at = u.counted_at, decided_by_id = NULL, decision_comment = NULL,
            evaluated_at = %s FROM bulk_result_updates u WHERE r.tenant_id = %s AND r.id = u.id""", (now, tenant_id))
    if writes.registrations:
        # Planner statistics lag behind a bulk load (a tenant's rows can look absent): a nested loop would then
        # run the aggregate once per participant. Set-based updates always want hash joins.
        cursor.execute("SET LOCAL enable_nestloop = off")
        # Someone with no results before this import: all their results are the ones just written, and their
        # total is computed here (reading a million fresh rows back would cost more than writing them).
        fresh = writes.registrations - writes.registrations_with_stored_results
        _temp_table(cursor, "bulk_totals", TOTAL_TYPES)
        _copy(cursor, "bulk_totals", TOTAL_TYPES, _fresh_totals(writes.results, fresh))
        cursor.execute(FRESH_TOTALS_SQL, {"tenant": tenant_id})
        others = sorted(writes.registrations - fresh)
        if others:
            cursor.execute(PARTICIPANT_TOTALS_SQL, {"tenant": tenant_id, "registrations": others})
    timed("participant totals", started)
    cursor.close()


TOTAL_TYPES = {"registration_id": "int8", "score": "int8", "distance_m": "int8", "activities": "int4",
               "reached_at": "timestamptz"}


def _fresh_totals(results, registrations):
    """refresh_participant's sums of the given results, for registrations that have no others."""
    totals = {}
    for row in results:
        registration, score, distance, counted = row[2], row[6], row[7], row[9]
        if registration not in registrations:
            continue
        total = totals.get(registration)
        if total is None:
            total = totals[registration] = [registration, 0, 0, 0, None]
        total[1] += score
        total[2] += distance
        if counted is not None:
            total[3] += 1
            if total[4] is None or counted > total[4]:
                total[4] = counted
    return totals.values()


FRESH_TOTALS_SQL = """
UPDATE participant_totals t
SET score = b.score, distance_m = b.distance_m, activities = b.activities, reached_at = b.reached_at,
    version = t.version + 1
FROM bulk_totals b
WHERE t.tenant_id = %(tenant)s AND t.registration_id = b.registration_id
"""

# refresh_participant, for many registrations at once.
PARTICIPANT_TOTALS_SQL = """
UPDATE participant_totals t
SET score = s.score, distance_m = s.distance_m, activities = s.activities, reached_at = s.reached_at,
    version = t.version + 1
FROM (SELECT r.registration_id, coalesce(sum(r.score), 0)::bigint AS score,
             coalesce(sum(r.counted_distance_m), 0)::bigint AS distance_m, count(r.counted_at) AS activities,
             max(r.counted_at) AS reached_at
      FROM activity_results r
      WHERE r.tenant_id = %(tenant)s AND r.registration_id = ANY(%(registrations)s)
      GROUP BY r.registration_id) s
WHERE t.tenant_id = %(tenant)s AND t.registration_id = s.registration_id
"""


def _write_generic(tenant_id, writes, now):
    """The same writes through SQLAlchemy Core, for engines without COPY (SQLite)."""
    from kindstride.leaderboards.services import refresh_participant

    session = db.session
    if writes.activities:
        session.execute(sa.insert(Activity.__table__), [
            {**dict(zip(ACTIVITY_COLUMNS, _activity_tuple(a), strict=True)), "tenant_id": tenant_id,
             "split_paces": list(a.row.split_paces)} for a in writes.activities])
    for activity_id, duplicate_of_id in writes.changed:
        session.execute(sa.update(Activity.__table__).where(Activity.__table__.c.id == activity_id)
                        .values(duplicate_of_id=duplicate_of_id))
    if writes.results:
        session.execute(sa.insert(ActivityResult.__table__), [
            {**dict(zip(RESULT_COLUMNS, row, strict=True)), "reasons": json.loads(row[5]), "tenant_id": tenant_id,
             "evaluated_at": now} for row in writes.results])
    table = ActivityResult.__table__
    for result_id, *values in writes.result_updates:
        update = dict(zip(RESULT_COLUMNS[3:], values, strict=True))
        update["reasons"] = json.loads(update["reasons"])
        session.execute(sa.update(table).where(table.c.id == result_id)
                        .values(**update, decided_by_id=None, decision_comment=None, evaluated_at=now))
    for registration_id in sorted(writes.registrations):
        refresh_participant(registration_id)


def _refresh_teams(team_ids_by_challenge, aggregations):
    """refresh_teams for every touched team, with hash joins (planner statistics lag a bulk load: see
    _write_postgres). Returns how many teams."""
    from kindstride.leaderboards.services import refresh_teams

    aggregation_of = {team_id: aggregations[challenge_id]
                      for challenge_id, team_ids in team_ids_by_challenge.items() if challenge_id in aggregations
                      for team_id in team_ids}
    if _postgres():
        db.session.execute(sa.text("SET LOCAL enable_nestloop = off"))
    refresh_teams(aggregation_of)
    if _postgres():
        db.session.execute(sa.text("SET LOCAL enable_nestloop = on"))
    return len(aggregation_of)


# ------------------------------------------------------------------------------------------- the import


def import_activities(tenant_id, rows, workers=1) -> ImportSummary:
    """Import activities of one tenant's people; see the module docstring. Commits.

    rows: ActivityRow tuples (or dicts of their fields), in any order: they are taken in the order received
    (received_at, then their position). workers > 1 judges and writes shards in parallel (PostgreSQL only).
    """
    rows = _as_rows(rows)
    _check(rows)
    collecting = gc.isenabled()
    gc.disable()  # millions of acyclic objects: collections would only walk them (and copy them in every fork)
    try:
        with tenant_scope(tenant_id):
            try:
                return _import(tenant_id, rows, workers)
            except BaseException:
                db.session.rollback()
                raise
    finally:
        if collecting:
            gc.enable()


def _import(tenant_id, rows, workers):
    started = time.perf_counter()
    now = utcnow()
    received = [row.received_at for row in rows]
    order = sorted(range(len(rows)), key=received.__getitem__)  # stable: equal receipts keep their order
    ids = _allocate_ids(len(rows))
    workers = max(1, workers if _postgres() else 1)
    shards = [_Shard() for _ in range(workers)]
    user_ids = set()
    for index, activity_id in zip(order, ids, strict=True):
        row = rows[index]
        shards[row.user_id % workers].new[row.user_id].append((activity_id, row))
        user_ids.add(row.user_id)
    stored_results = _stored_state(tenant_id, user_ids, lambda user_id: shards[user_id % workers])
    memberships_of, aggregations = _memberships(user_ids)
    for shard in shards:
        shard.users = sorted(set(shard.new) | set(shard.stored))
        shard.results = stored_results
    summary = ImportSummary(received=len(rows))
    summary.timed("prepare", started)
    challenge_ids = sorted(aggregations)

    def invalidate_boards():
        for challenge_id in challenge_ids:
            ranking.invalidate(tenant_id, challenge_id)

    if workers == 1:
        writes = _plan_shard(shards[0], memberships_of)
        if _postgres():
            connection = db.session.connection()
            connection.exec_driver_sql("SELECT 1")  # brings the row-level-security setting in line with the scope
            _write_postgres(connection.connection.driver_connection, tenant_id, writes, now)
        else:
            _write_generic(tenant_id, writes, now)
        summary.already_stored = writes.summary.already_stored
        summary.add(writes.summary)
        registrations = writes.registrations
    else:
        db.session.commit()  # the workers' transactions must see everything this one did
        registrations = set()
        for shard_summary, shard_registrations in _run_workers(tenant_id, shards, memberships_of, now,
                                                               invalidate_boards):
            summary.already_stored += shard_summary.already_stored
            summary.add(shard_summary)
            registrations |= shard_registrations
    teams = defaultdict(set)
    for memberships in memberships_of.values():
        for m in memberships:
            if m.registration_id in registrations and m.team_id is not None:
                teams[m.judging.challenge_id].add(m.team_id)
    started = time.perf_counter()
    summary.teams = _refresh_teams(teams, aggregations)
    invalidate_boards()  # the leaderboard cache must not be declared built from the state before this commit
    db.session.commit()
    invalidate_boards()
    started = summary.timed("team totals", started)
    for challenge_id in challenge_ids:
        ranking.build(tenant_id, challenge_id)
    summary.timed("leaderboard cache", started)
    return summary


def _run_workers(tenant_id, shards, memberships_of, now, before_commit):
    """Fork one process per shard; each writes in its own transaction, then all commit or all roll back."""
    context = multiprocessing.get_context("fork")
    gc.freeze()  # what the workers inherit stays shared: no collection touches (and copies) it
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    pipes, processes = [], []
    for shard in shards:
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child, url, tenant_id, shard, memberships_of, now),
                                  daemon=True)
        process.start()
        child.close()
        pipes.append(parent)
        processes.append(process)
    outcomes, failures = [], []
    for pipe in pipes:
        try:
            message = pipe.recv()
        except EOFError:
            message = ("failed", "the worker exited without a word")
        (outcomes if message[0] == "ready" else failures).append(message)
    if not failures:
        before_commit()
    decision = "rollback" if failures else "commit"
    for pipe in pipes:
        try:
            pipe.send(decision)
            pipe.recv()
        except (EOFError, BrokenPipeError, OSError):
            pass
    for process in processes:
        process.join()
    gc.unfreeze()
    if failures:
        raise RuntimeError("bulk import failed in a worker; nothing was stored:\n" + failures[0][1])
    return [(summary, registrations) for _ready, summary, registrations in outcomes]


def _worker(pipe, url, tenant_id, shard, memberships_of, now):
    import psycopg

    status = 0
    try:
        with psycopg.connect(url) as connection:
            try:
                connection.execute("SELECT set_config(%s, %s, true)", (RLS_SETTING, str(tenant_id)))
                writes = _plan_shard(shard, memberships_of)
                _write_postgres(connection, tenant_id, writes, now)
                pipe.send(("ready", writes.summary, writes.registrations))
            except BaseException:
                pipe.send(("failed", traceback.format_exc()))
                connection.rollback()
                pipe.recv()
                pipe.send("done")
                return
            if pipe.recv() == "commit":
                connection.commit()
            else:
                connection.rollback()
            pipe.send("done")
    except BaseException:
        status = 1
    finally:
        pipe.close()
        os._exit(status)  # never run the parent's exit handlers (its app, its pools) in this fork


# ------------------------------------------------------------------------------------ from-scratch check


def recompute(tenant_id, user_ids):
    """Judge these people's stored activities again from nothing, as if received one by one in id order, and
    compare with what is stored (duplicates, verdicts, scores). Returns (results compared, differences).
    Moderators' decisions are not replayed: use it where there are none. Runs in the tenant scope; reads only."""
    table = Activity.__table__
    shard = _Shard()
    for a in db.session.execute(sa.select(table.c).where(table.c.tenant_id == tenant_id,
                                                          table.c.user_id.in_(list(user_ids)))
                                .order_by(table.c.id)):
        row = ActivityRow(user_id=a.user_id, source=a.source, sport=a.sport, start=a.start, elapsed_s=a.elapsed_s,
                          moving_s=a.moving_s, distance_m=a.distance_m, fingerprint=a.fingerprint,
                          received_at=a.received_at, title=a.title, has_gps=a.has_gps, is_indoor=a.is_indoor,
                          split_paces=tuple(a.split_paces or ()))
        shard.new[a.user_id].append((a.id, row))
        shard.users.append(a.user_id)
    shard.users = sorted(set(shard.users))
    memberships_of, _aggregations = _memberships(shard.users)
    writes = _plan_shard(shard, memberships_of)
    stored_duplicates = dict(db.session.execute(sa.select(table.c.id, table.c.duplicate_of_id)
                                                .where(table.c.tenant_id == tenant_id,
                                                       table.c.user_id.in_(list(user_ids)))).all())
    differences = sum(stored_duplicates.get(a.id, "missing") != a.duplicate_of_id for a in writes.activities)
    results = ActivityResult.__table__
    stored = {(r.registration_id, r.activity_id): (r.status, r.score, r.counted_distance_m, r.local_day, r.counted_at)
              for r in db.session.execute(sa.select(results.c).where(
                  results.c.tenant_id == tenant_id,
                  results.c.activity_id.in_(list(stored_duplicates))))}
    expected = {(r[2], r[0]): (r[4], r[6], r[7], r[8], r[9]) for r in writes.results}
    differences += sum(stored.get(key) != value for key, value in expected.items())
    differences += len(set(stored) - set(expected))
    return len(expected), differences
