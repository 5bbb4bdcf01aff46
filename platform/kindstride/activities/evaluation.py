"""Judging activities against challenge rulesets, and keeping results and totals in step.

Results never depend on hook order or on the order jobs ran in: a participant's activities are judged
in start order, and every result records the ruleset version it was judged with.
"""

import json
import zoneinfo
from collections import defaultdict
from datetime import timedelta
from math import floor
from typing import NamedTuple

import sqlalchemy as sa

from kindstride.activities.models import ACCEPTED, DUPLICATE, FLAGGED, REJECTED, Activity, ActivityResult
from kindstride.challenges import rulesets
from kindstride.challenges.models import CLOSED, Challenge, Registration, RulesetVersion, Team
from kindstride.db import db, utcnow
from kindstride.leaderboards.services import refresh_participant, refresh_participants, refresh_teams
from kindstride.plugins import plugin_host
from kindstride.rules.contract import FLAG, REJECT, ActivityFacts, ChallengeContext, Reason
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import require_tenant_id


class Verdict(NamedTuple):  # one per activity judged: a named tuple is the cheapest immutable record
    status: str
    reasons: tuple[Reason, ...]
    score: int
    counted_distance_m: int


def facts_of(activity: Activity) -> ActivityFacts:
    return ActivityFacts(
        sport=activity.sport, start=activity.start, elapsed_s=activity.elapsed_s, moving_s=activity.moving_s,
        distance_m=activity.distance_m, source="app" if activity.source == "strava" else activity.source,
        has_gps=activity.has_gps, received_at=activity.received_at, is_indoor=activity.is_indoor,
        split_paces_s_per_km=tuple(activity.split_paces or ()),
    )


def judge(facts: ActivityFacts, ruleset: rulesets.ResolvedRuleset, context: ChallengeContext,
          day_independent_reasons=None) -> Verdict:
    """The pure verdict: reasons from every validation rule, a score only when accepted.

    day_independent_reasons: what the ruleset's day-independent rules found for these facts, when check_many has
    already asked them (prechecked()); otherwise they are asked here."""
    if day_independent_reasons is None:
        found = []
        for rule, params in ruleset.day_independent:
            found += rule.check(facts, params, context)
    else:
        found = [*day_independent_reasons]
    for rule, params in ruleset.day_dependent:
        found += rule.check(facts, params, context)
    if not found:  # most activities: no reasons to look through
        return Verdict(ACCEPTED, (), scored(facts, ruleset, context), int(facts.distance_m))
    reasons = tuple(found)
    if any(reason.outcome == REJECT for reason in reasons):
        return Verdict(REJECTED, reasons, 0, 0)
    if any(reason.outcome == FLAG for reason in reasons):
        return Verdict(FLAGGED, reasons, 0, 0)
    return Verdict(ACCEPTED, reasons, scored(facts, ruleset, context), int(facts.distance_m))


def prechecked(activities, ruleset, context) -> list:
    """The facts of each activity with the reasons the ruleset's day-independent rules give it, each rule asked
    about all of them at once (check_many): [(facts, reasons)], ready for judge() in each one's day."""
    facts = [facts_of(activity) for activity in activities]
    reasons = [()] * len(facts)
    for rule, params in ruleset.day_independent:
        found = rule.check_many(facts, params, context)
        for index in [index for index, listed in enumerate(found) if listed]:
            reasons[index] += tuple(found[index])
    return list(zip(facts, reasons, strict=True))


def scored(facts, ruleset, context) -> int:
    scoring, params = ruleset.scoring
    factor = 1
    for multiplier, multiplier_params in ruleset.multipliers:
        applied = multiplier.factor(facts, multiplier_params, context)
        if applied != 1:  # most days are plain days: no Fraction arithmetic for them
            factor = applied * factor
    return floor(scoring.score(facts, params) * factor)


def local_day(challenge, moment):
    return moment.astimezone(zoneinfo.ZoneInfo(challenge.timezone)).date()


def resolved_ruleset(challenge) -> rulesets.ResolvedRuleset | None:
    """The challenge's current ruleset, or None with scoring frozen when a strategy is missing."""
    def stored_ruleset():
        return db.session.scalar(sa.select(RulesetVersion.ruleset).where(
            RulesetVersion.challenge_id == challenge.id, RulesetVersion.version == challenge.ruleset_version))

    try:
        resolved = rulesets.resolve_version(challenge.id, challenge.ruleset_version,
                                            db.session.get(Tenant, challenge.tenant_id), stored_ruleset)
    except rulesets.RulesetError as error:
        challenge.scoring_frozen_reason = str(error)
        return None
    challenge.scoring_frozen_reason = None
    return resolved


def context_for(challenge, registration, activity, day):
    """Same-day figures from the participant's results judged before this activity."""
    earlier = sa.or_(Activity.start < activity.start, sa.and_(Activity.start == activity.start,
                                                                Activity.id < activity.id))
    count, distance = db.session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Activity.distance_m), 0))
        .select_from(ActivityResult).join(Activity, Activity.id == ActivityResult.activity_id)
        .where(ActivityResult.registration_id == registration.id, ActivityResult.local_day == day,
               ActivityResult.status == ACCEPTED, ActivityResult.activity_id != activity.id, earlier)
    ).one()
    return ChallengeContext(timezone=challenge.timezone, counting_start=challenge.counting_start,
                            counting_end=challenge.counting_end, same_day_count=count,
                            same_day_distance_m=float(distance))


def standing_verdict(activity, counts_from) -> Verdict | None:
    """The verdict no rule is asked about: a duplicate recording, or an activity before a team-switch reset."""
    if activity.duplicate_of_id is not None:
        return Verdict(DUPLICATE, (Reason("duplicate_recording", REJECT, {"of": activity.duplicate_of_id}),), 0, 0)
    if counts_from is not None and activity.start < counts_from:
        return Verdict(REJECTED, (Reason("before_team_switch", REJECT, {}),), 0, 0)
    return None


def judge_in(challenge, registration, activity, ruleset) -> Verdict:
    standing = standing_verdict(activity, registration.counts_from)
    if standing is not None:
        return standing
    day = local_day(challenge, activity.start)
    return judge(facts_of(activity), ruleset, context_for(challenge, registration, activity, day))


def reason_dicts(reasons) -> list[dict]:
    """Reasons as a result stores them."""
    return [{"code": r.code, "outcome": r.outcome, "params": r.params} for r in reasons]


def counted_at(activity, score):
    """The end of an activity while it counts (the "who reached it first" tie-break), else None."""
    return activity.start + timedelta(seconds=activity.elapsed_s) if score > 0 else None


def set_counted(result, activity, score, distance_m):
    result.score = score
    result.counted_distance_m = distance_m
    result.counted_at = counted_at(activity, score)


def evaluate_activity(activity_id):
    """A tenant job: judge a new or changed activity in every challenge its owner is in."""
    evaluate_activities([[activity_id]])


def evaluate_activities(calls):
    """The batched form of evaluate_activity (kindstride.jobs.queue runs queued evaluations this way, calls being
    the argument lists of many evaluate_activity jobs). It ends where judging each activity one at a time with
    evaluate_activity would (see judge_people), and the activity_accepted hook is told of each activity of the
    batch accepted in a challenge."""
    ids = list(dict.fromkeys(call[0] for call in calls))
    tenant_id = require_tenant_id()
    c = Activity.__table__.c
    people = db.session.connection().execute(sa.select(c.user_id).where(c.tenant_id == tenant_id,
                                                                        c.id.in_(ids))).scalars()
    judged = judge_people(people, ids)
    if judged is not None:
        _announce_accepted(tenant_id, ids, *judged)


def judge_people(user_ids, activity_ids=None, challenge_id=None):
    """Judge these people's activities again: the days of `activity_ids` (None: every activity), in every
    challenge they are active in (or in `challenge_id` only), and bring their totals and their teams' in step.

    The people are locked first (a transaction-level advisory lock per person, in id order), so two batches
    never judge the same person's days at the same time; then their activities and results are read once, and
    each person's touched days are judged in start order by the bulk planner: the same judge(), the same-day
    context, a moderator's decision kept until the ruleset changes or the activity turns out a duplicate, and
    activities far before a challenge's window left alone. The verdicts are written in one statement each way
    (new, changed), the participant totals recomputed in one statement and the teams' in one per aggregation.
    Returns what the activity_accepted hook needs, or None when there was nobody to judge."""
    from kindstride.activities.bulk import PlannedActivity, Writes, judge_membership

    people = sorted(set(user_ids))
    if not people:
        return None
    tenant_id = require_tenant_id()
    lock_people(people)
    # Core statements on the session's connection (tenant_id in each): a batch's reads and writes are sets of
    # plain rows, with no ORM objects to track. Read only now, under the locks: while this batch waited for a
    # person, a request may have made one of their activities a duplicate (or not) and queued it again; judging
    # an older copy would leave a stale verdict.
    connection = db.session.connection()
    c = Activity.__table__.c
    pools = defaultdict(list)
    for a in connection.execute(sa.select(*(c[name] for name in PLANNED_COLUMNS))
                                .where(c.tenant_id == tenant_id, c.user_id.in_(people))):
        pools[a.user_id].append(PlannedActivity(*a))
    stored = stored_results(connection, tenant_id, [a.id for pool in pools.values() for a in pool])
    memberships = _memberships(people, challenge_id)
    wanted = None if activity_ids is None else set(activity_ids)
    writes = Writes()
    for user_id in people:
        pool = pools[user_id]
        triggered = pool if wanted is None else [a for a in pool if a.id in wanted]
        for membership in memberships.get(user_id, ()):
            judge_membership(membership, pool, triggered, stored, writes)
    _write_verdicts(tenant_id, writes)
    aggregation_of = {}
    for membership_list in memberships.values():
        for m in membership_list:
            if m.registration_id in writes.registrations:
                aggregation_of[m.registration_id] = m.judging.ruleset.team_aggregation
    teams = {}
    for registration_id, team_id in refresh_participants(writes.registrations).items():
        if team_id is not None:
            teams[team_id] = aggregation_of[registration_id]
    refresh_teams(teams)
    return memberships, pools, stored, writes


# The columns the planner judges by, in the order of its activities' (bulk.PlannedActivity) arguments.
PLANNED_COLUMNS = ("id", "user_id", "source", "sport", "start", "elapsed_s", "moving_s", "distance_m", "has_gps",
                   "is_indoor", "split_paces", "received_at", "fingerprint", "duplicate_of_id")


def stored_results(connection, tenant_id, activity_ids):
    """(registration id, activity id) -> (result id, status, local day, decided by, ruleset version)."""
    table = ActivityResult.__table__
    c = table.c
    rows = connection.execute(sa.select(c.id, c.registration_id, c.activity_id, c.status, c.local_day,
                                        c.decided_by_id, c.ruleset_version)
                              .where(c.tenant_id == tenant_id, c.activity_id.in_(activity_ids)))
    return {(r.registration_id, r.activity_id): (r.id, r.status, r.local_day, r.decided_by_id, r.ruleset_version)
            for r in rows}


def _memberships(user_ids, challenge_id=None):
    """user id -> the bulk planner's memberships: active registrations in challenges that are not closed (or in
    this one) and whose ruleset resolves (scoring is frozen otherwise: a missing strategy never falls back)."""
    from kindstride.activities.bulk import Judging, Membership

    query = (sa.select(Registration.user_id, Registration.id, Registration.team_id, Registration.counts_from,
                       Registration.challenge_id)
             .join(Challenge, Challenge.id == Registration.challenge_id)
             .where(Registration.user_id.in_(user_ids), Registration.status == "active", Challenge.status != CLOSED)
             .order_by(Registration.user_id, Registration.challenge_id))
    if challenge_id is not None:
        query = query.where(Registration.challenge_id == challenge_id)
    registrations = db.session.execute(query).all()
    judging = {}
    for challenge in db.session.scalars(sa.select(Challenge).where(
            Challenge.id.in_({r.challenge_id for r in registrations}))):
        ruleset = resolved_ruleset(challenge)
        judging[challenge.id] = None if ruleset is None else Judging(challenge, ruleset)
    found = defaultdict(list)
    for user_id, registration_id, team_id, counts_from, challenge_id in registrations:
        if judging[challenge_id] is not None:
            found[user_id].append(Membership(judging[challenge_id], registration_id, team_id, counts_from))
    return found


def _write_verdicts(tenant_id, writes):
    """The planner's new and changed results, in one statement each (executemany)."""
    table = ActivityResult.__table__
    now = utcnow()
    connection = db.session.connection()
    if writes.results:
        connection.execute(sa.insert(table), [
            {"tenant_id": tenant_id, "activity_id": r[0], "challenge_id": r[1], "registration_id": r[2],
             "ruleset_version": r[3], "status": r[4], "reasons": json.loads(r[5]), "score": r[6],
             "counted_distance_m": r[7], "local_day": r[8], "counted_at": r[9], "evaluated_at": now}
            for r in writes.results])
    if writes.result_updates:
        connection.execute(
            sa.update(table).where(table.c.tenant_id == tenant_id, table.c.id == sa.bindparam("result_id"))
            .values(ruleset_version=sa.bindparam("version"), status=sa.bindparam("new_status"),
                    reasons=sa.bindparam("new_reasons", type_=table.c.reasons.type),
                    score=sa.bindparam("new_score"), counted_distance_m=sa.bindparam("distance"),
                    local_day=sa.bindparam("day"), counted_at=sa.bindparam("counted"), decided_by_id=None,
                    decision_comment=None, evaluated_at=now),
            [{"result_id": u[0], "version": u[1], "new_status": u[2], "new_reasons": json.loads(u[3]),
              "new_score": u[4], "distance": u[5], "day": u[6], "counted": u[7]} for u in writes.result_updates])
        for obj in list(db.session.identity_map.values()):  # results this session holds: read them again
            if type(obj) is ActivityResult:
                db.session.expire(obj)


def _announce_accepted(tenant_id, ids, memberships, pools, stored, writes):
    """The activity_accepted hook, for each activity of the batch accepted in a challenge (as it stands now)."""
    status = {(row[2], row[0]): row[4] for row in writes.results}
    key_of = {result[0]: key for key, result in stored.items()}
    status.update({key_of[update[0]]: update[2] for update in writes.result_updates})
    hook = plugin_host().manager.hook
    activity_of = {a.id: a for pool in pools.values() for a in pool}
    for activity_id in sorted(set(ids) & set(activity_of)):
        activity = activity_of[activity_id]
        for membership in memberships.get(activity.user_id, ()):
            key = (membership.registration_id, activity_id)
            if activity.start >= membership.judging.cutoff and status.get(
                    key, stored[key][1] if key in stored else None) == ACCEPTED:
                hook.activity_accepted(tenant_id=tenant_id, activity_id=activity_id)


EVALUATION_LOCK = 0x6B73  # advisory lock class of "judging this person's activities" (objid: the user id)


def lock_people(user_ids):
    """Hold these people's judging (until the transaction ends): whatever writes their results takes it first."""
    if db.session.get_bind().dialect.name != "postgresql" or not user_ids:
        return  # SQLite serialises writers anyway
    # One statement; the locks are taken in the subquery's order (volatile output is computed after sorting).
    db.session.execute(sa.text("SELECT count(pg_advisory_xact_lock(:kind, person)) FROM "
                               "(SELECT DISTINCT unnest(CAST(:people AS int[])) AS person ORDER BY 1) AS people"),
                       {"kind": EVALUATION_LOCK, "people": [user_id % 2**31 for user_id in user_ids]})


evaluate_activity.batch = evaluate_activities  # queued evaluations are run in batches (kindstride.jobs.queue)


def reevaluate_registration(challenge, registration):
    """Judge a participant's activities again in this challenge (after a team switch with a reset, or once their
    entry fee is paid), and bring their totals in step."""
    db.session.flush()  # the registration as the caller left it (say, active now)
    judge_people([registration.user_id], challenge_id=challenge.id)
    refresh_participant(registration.id)


REEVALUATION = "reevaluation"  # the name of its progress record (kindstride.web.progress)
REEVALUATION_CHUNK = 2000  # people judged at a time: their activities and results are held in memory


def reevaluate_challenge(challenge_id, version):
    """A tenant job: judge every activity again under ruleset `version`, then rebuild the totals."""
    challenge = db.session.get(Challenge, challenge_id)
    if challenge is None or challenge.ruleset_version != version:
        return  # a newer version's job does the work
    ruleset = resolved_ruleset(challenge)
    if ruleset is None:
        return
    from kindstride.web import progress

    people = db.session.scalars(sa.select(Registration.user_id).where(Registration.challenge_id == challenge_id)
                                .order_by(Registration.user_id)).all()
    # The admin's ruleset page shows how far this has got; "done" is written once the job's transaction commits.
    tracker = progress.track(db.session(), REEVALUATION, challenge_id, version, len(people))
    for start in range(0, len(people), REEVALUATION_CHUNK):
        chunk = people[start:start + REEVALUATION_CHUNK]
        judge_people(chunk, challenge_id=challenge_id)
        tracker.step(len(chunk))
    # Every team, touched or not: a new ruleset may aggregate the same member totals differently.
    teams = db.session.scalars(sa.select(Team.id).where(Team.challenge_id == challenge_id))
    refresh_teams(dict.fromkeys(teams, ruleset.team_aggregation))
