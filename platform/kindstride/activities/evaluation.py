"""Judging activities against challenge rulesets, and keeping results and totals in step.

Results never depend on hook order or on the order jobs ran in: a participant's activities are judged
in start order, and every result records the ruleset version it was judged with.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from math import floor

import sqlalchemy as sa

from kindstride.activities.models import ACCEPTED, DUPLICATE, FLAGGED, REJECTED, Activity, ActivityResult
from kindstride.challenges import rulesets
from kindstride.challenges.models import CLOSED, Challenge, Registration, RulesetVersion
from kindstride.db import db, utcnow
from kindstride.leaderboards.services import refresh_participant, refresh_participants, refresh_team
from kindstride.plugins import plugin_host
from kindstride.rules.contract import FLAG, REJECT, ActivityFacts, ChallengeContext, Reason
from kindstride.tenancy.models import Tenant


@dataclass(frozen=True)
class Verdict:
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


def judge(facts: ActivityFacts, ruleset: rulesets.ResolvedRuleset, context: ChallengeContext) -> Verdict:
    """The pure verdict: reasons from every validation rule, a score only when accepted."""
    reasons = tuple(reason for rule, params in ruleset.validation for reason in rule.check(facts, params, context))
    if any(reason.outcome == REJECT for reason in reasons):
        return Verdict(REJECTED, reasons, 0, 0)
    if any(reason.outcome == FLAG for reason in reasons):
        return Verdict(FLAGGED, reasons, 0, 0)
    return Verdict(ACCEPTED, reasons, scored(facts, ruleset, context), int(facts.distance_m))


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


def keeps_decision(result, version, activity) -> bool:
    """A moderator's decision stands until the ruleset changes or the activity turns out a duplicate."""
    return bool(result.decided_by_id) and result.ruleset_version == version and activity.duplicate_of_id is None


def record(challenge, registration, activity, ruleset, known=None):
    """Judge one activity in one challenge and store the result; a moderator's decision stands. `known`: the
    results of (challenge id, activity id) pairs already looked up (None: there is none), kept up to date."""
    key = (challenge.id, activity.id)
    if known is not None and key in known:
        result = known[key]
    else:
        result = db.session.scalar(sa.select(ActivityResult).where(ActivityResult.challenge_id == challenge.id,
                                                                   ActivityResult.activity_id == activity.id))
    if result is not None and keeps_decision(result, challenge.ruleset_version, activity):
        return result
    verdict = judge_in(challenge, registration, activity, ruleset)
    if result is None:
        result = ActivityResult(challenge_id=challenge.id, activity_id=activity.id,
                                registration_id=registration.id)
        db.session.add(result)
    result.ruleset_version = challenge.ruleset_version
    result.status = verdict.status
    result.reasons = reason_dicts(verdict.reasons)
    result.local_day = local_day(challenge, activity.start)
    set_counted(result, activity, verdict.score, verdict.counted_distance_m)
    result.decided_by_id = result.decision_comment = None
    result.evaluated_at = utcnow()
    db.session.flush()
    if known is not None:
        known[key] = result
    return result


def set_counted(result, activity, score, distance_m):
    result.score = score
    result.counted_distance_m = distance_m
    result.counted_at = counted_at(activity, score)


def evaluate_activity(activity_id):
    """A tenant job: judge a new or changed activity in every challenge its owner is in."""
    evaluate_activities([[activity_id]])


def evaluate_activities(calls):
    """The batched form of evaluate_activity (kindstride.jobs.queue runs queued evaluations this way, calls being
    the argument lists of many evaluate_activity jobs): every activity is judged as evaluate_activity judges it,
    in the order given, in one transaction; the touched participant totals are then recomputed once, in one
    statement, and each touched team total once, in id order, instead of once per activity. The owners of the
    activities are locked first (a transaction-level advisory lock per person, in id order), so two batches never
    judge the same person's days at the same time."""
    ids = list(dict.fromkeys(call[0] for call in calls))
    people = sorted(set(db.session.scalars(sa.select(Activity.user_id).where(Activity.id.in_(ids)))))
    lock_people(people)
    # Read only now, and afresh: while this batch waited for a person, a request may have made one of their
    # activities a duplicate (or not) and queued it again; a batch judging the older copy after the newer
    # batch would leave the stale verdict.
    activities = {a.id: a for a in db.session.scalars(sa.select(Activity).where(Activity.id.in_(ids))
                                                      .execution_options(populate_existing=True))}
    memberships = _challenges_of(people)
    # Held for the whole batch: the session's identity map only keeps objects someone refers to, and
    # resolved_ruleset looks the tenant up for every activity.
    tenants = list(db.session.scalars(sa.select(Tenant).where(
        Tenant.id.in_({a.tenant_id for a in activities.values()}))))
    # The batch's results looked up at once (a new activity has none).
    known = {(challenge.id, activity.id): None for activity in activities.values()
             for challenge, _registration in memberships.get(activity.user_id, ())}
    for result in db.session.scalars(sa.select(ActivityResult).where(ActivityResult.activity_id.in_(ids))):
        known[(result.challenge_id, result.activity_id)] = result
    touched = {}  # registration id -> team aggregation of its challenge's ruleset
    for activity_id in ids:
        activity = activities.get(activity_id)
        if activity is not None:
            _evaluate(activity, touched, memberships.get(activity.user_id, ()), known)
    del tenants
    teams = {}
    for registration_id, team_id in refresh_participants(touched).items():
        if team_id is not None and touched[registration_id] is not None:
            teams[team_id] = touched[registration_id]
    for team_id in sorted(teams):
        refresh_team(team_id, teams[team_id])


EVALUATION_LOCK = 0x6B73  # advisory lock class of "judging this person's activities" (objid: the user id)


def lock_people(user_ids):
    """Hold these people's judging (until the transaction ends): whatever writes their results takes it first."""
    if db.session.get_bind().dialect.name != "postgresql":
        return  # SQLite serialises writers anyway
    for user_id in user_ids:
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:kind, :person)"),
                           {"kind": EVALUATION_LOCK, "person": user_id % 2**31})


def _challenges_of(user_ids):
    """user id -> [(challenge, registration)]: their active registrations in challenges not closed."""
    found = {}
    for challenge, registration in db.session.execute(
            sa.select(Challenge, Registration).join(Registration, Registration.challenge_id == Challenge.id)
            .where(Registration.user_id.in_(user_ids), Registration.status == "active", Challenge.status != CLOSED)
            .order_by(Challenge.id)):
        found.setdefault(registration.user_id, []).append((challenge, registration))
    return found


def _evaluate(activity, touched, memberships, known):
    for challenge, registration in memberships:
        ruleset = resolved_ruleset(challenge)
        if ruleset is None:
            continue
        if activity.start < challenge.counting_start - timedelta(days=7):
            continue  # far outside the window: not this challenge's business
        # Later same-day activities may change verdict (daily limits): judge the day again in order.
        for later in _same_day_from(challenge, registration, activity):
            result = record(challenge, registration, later, ruleset, known)
            if later is activity and result.status == ACCEPTED:
                plugin_host().manager.hook.activity_accepted(tenant_id=activity.tenant_id, activity_id=activity.id)
        touched[registration.id] = ruleset.team_aggregation


evaluate_activity.batch = evaluate_activities  # queued evaluations are run in batches (kindstride.jobs.queue)


def _same_day_from(challenge, registration, activity):
    day = local_day(challenge, activity.start)
    judged_same_day = sa.select(ActivityResult.activity_id).where(
        ActivityResult.registration_id == registration.id, ActivityResult.local_day == day)
    later = db.session.scalars(
        sa.select(Activity).where(Activity.user_id == registration.user_id, Activity.id.in_(judged_same_day),
                                  Activity.start > activity.start)
        .order_by(Activity.start, Activity.id)).all()
    return [activity, *later]


def reevaluate_registration(challenge, registration, ruleset=None):
    ruleset = ruleset or resolved_ruleset(challenge)
    if ruleset is None:
        return
    activities = db.session.scalars(
        sa.select(Activity).where(Activity.user_id == registration.user_id).order_by(Activity.start, Activity.id))
    for activity in activities:
        record(challenge, registration, activity, ruleset)
    refresh_participant(registration.id)


REEVALUATION = "reevaluation"  # the name of its progress record (kindstride.web.progress)


def reevaluate_challenge(challenge_id, version):
    """A tenant job: judge every activity again under ruleset `version`, then rebuild the totals."""
    challenge = db.session.get(Challenge, challenge_id)
    if challenge is None or challenge.ruleset_version != version:
        return  # a newer version's job does the work
    ruleset = resolved_ruleset(challenge)
    if ruleset is None:
        return
    from kindstride.web import progress

    total = db.session.scalar(sa.select(sa.func.count()).select_from(Registration)
                              .where(Registration.challenge_id == challenge_id))
    # The admin's ruleset page shows how far this has got; "done" is written once the job's transaction commits.
    tracker = progress.track(db.session(), REEVALUATION, challenge_id, version, total)
    for registration in db.session.scalars(sa.select(Registration).where(Registration.challenge_id == challenge_id)):
        reevaluate_registration(challenge, registration, ruleset)
        tracker.step()
    for team_id in _team_ids(challenge):
        refresh_team(team_id, ruleset.team_aggregation)


def _team_ids(challenge):
    from kindstride.challenges.models import Team

    return db.session.scalars(sa.select(Team.id).where(Team.challenge_id == challenge.id)).all()
