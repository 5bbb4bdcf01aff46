"""Built-in activity validation rules.

Each rule returns at most one Reason per code. Numbers are compared exactly (as fractions of the recorded
values), so an activity exactly at a limit passes and float rounding never decides a verdict. A value
beyond a limit is reported rounded away from the limit, so a message never shows it equal to the limit.

Exact and fast: a recorded float compares exactly with an integer limit as it is (Python compares float
and int exactly); a computed value (a pace, a day's sum) is first computed in floats, and only when that
lands near a limit is it computed again as a Fraction (an import judges a million activities).
"""

import math
from datetime import UTC, timedelta
from fractions import Fraction
from functools import cache

from marshmallow import Schema, fields, validate, validates_schema

from kindstride.rules.contract import FLAG, SPORTS, ActivityFacts, ChallengeContext, Reason, ValidationRule

from .params import (
    ACCEPT,
    OUTCOMES_OR_ACCEPT,
    FractionField,
    PaceWindow,
    RuleParams,
    optional_int,
    require_one_of,
    require_ordered,
    sports_list,
)


def pace_s_per_km(seconds: float, metres: float) -> Fraction | None:
    """Exact seconds per km; None when no distance was covered, as there is no pace to judge."""
    if metres <= 0:
        return None
    return Fraction(seconds) * 1000 / Fraction(metres)


# A float computation of a pace or a sum of two floats is off by far less than this, relatively.
NEAR_LIMIT = 1e-9


def clearly_within(approximation: float, low, high) -> bool:
    """Whether a non-negative value whose float approximation this is lies inside [low, high] with room to
    spare, so that the exact comparison cannot come out otherwise."""
    return ((low is None or approximation * (1 - NEAR_LIMIT) > low)
            and (high is None or approximation * (1 + NEAR_LIMIT) < high))


def out_of_range(value, low, high, codes, keys, outcome, **extra) -> Reason | None:
    """A Reason when `value` is below `low` or above `high` (None for no bound).

    codes: (code when too low, code when too high); keys: (value's param name, limit's param name).
    """
    too_low, too_high = codes
    value_key, limit_key = keys
    if low is not None and value < low:
        return Reason(too_low, outcome, {**extra, value_key: math.floor(value), limit_key: low})
    if high is not None and value > high:
        return Reason(too_high, outcome, {**extra, value_key: math.ceil(value), limit_key: high})
    return None


@cache
def _duration(seconds: int) -> timedelta:
    """A rule's tolerance or deadline as a timedelta, made once per value (rules run a million times)."""
    return timedelta(seconds=seconds)


def _iso(moment) -> str:
    return moment.astimezone(UTC).isoformat()


def _listed(reason: Reason | None) -> list[Reason]:
    return [] if reason is None else [reason]


class AllowedSportsParams(RuleParams):
    sports = sports_list(required=True)


class AllowedSports(ValidationRule):
    name = "allowed_sports"
    label = "Allowed sport types"
    params_schema = AllowedSportsParams

    uses_same_day = False

    def passes_many(self, activities, params, context):
        sports = params["sports"]
        return [activity.sport in sports for activity in activities]

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        if activity.sport in params["sports"]:
            return []
        return [Reason("sport_not_allowed", params["outcome"], {"sport": activity.sport,
                                                                 "allowed": list(params["sports"])})]


class AveragePaceWindowParams(RuleParams):
    windows = fields.Dict(keys=fields.String(validate=validate.OneOf(SPORTS)), values=fields.Nested(PaceWindow),
                          required=True, validate=validate.Length(min=1))


class AveragePaceWindow(ValidationRule):
    """Average moving pace (moving time / distance) within a window per sport; other sports pass."""

    name = "average_pace_window"
    label = "Average pace window per sport"
    params_schema = AveragePaceWindowParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        bounds = {sport: (window["min_s_per_km"], window["max_s_per_km"])
                  for sport, window in params["windows"].items()}
        passing = []
        for activity in activities:
            window = bounds.get(activity.sport)
            passing.append(window is None or activity.distance_m <= 0
                           or clearly_within(activity.moving_s * 1000 / activity.distance_m, *window))
        return passing

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        window = params["windows"].get(activity.sport)
        if window is None or activity.distance_m <= 0:  # no distance: distance_limits is the rule that refuses it
            return []
        low, high = window["min_s_per_km"], window["max_s_per_km"]
        if clearly_within(activity.moving_s * 1000 / activity.distance_m, low, high):
            return []
        pace = pace_s_per_km(activity.moving_s, activity.distance_m)
        return _listed(out_of_range(pace, low, high,
                                    ("pace_too_fast", "pace_too_slow"), ("pace_s_per_km", "limit_s_per_km"),
                                    params["outcome"]))


class SplitPaceLimitParams(RuleParams, PaceWindow):
    sports = sports_list(load_default=None)  # None: every sport
    when_splits_unavailable = fields.String(load_default=FLAG, validate=validate.OneOf(OUTCOMES_OR_ACCEPT))


class SplitPaceLimit(ValidationRule):
    """Every complete 1-km split within the pace window; reports the first offending km of each kind.

    An activity of 1 km or more without splits has no distance stream (typed in, or a summary-only
    import): `when_splits_unavailable` says whether to accept, flag or reject it.
    """

    name = "split_pace_limit"
    label = "Pace of every 1-km split"
    params_schema = SplitPaceLimitParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        sports, low, high = params["sports"], params["min_s_per_km"], params["max_s_per_km"]
        lenient = params["when_splits_unavailable"] == ACCEPT
        passing = []
        for activity in activities:
            splits = activity.split_paces_s_per_km
            if sports is not None and activity.sport not in sports:
                passing.append(True)
            elif splits:
                passing.append((low is None or min(splits) >= low) and (high is None or max(splits) <= high))
            else:
                passing.append(activity.distance_m < 1000 or lenient)
        return passing

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        if params["sports"] is not None and activity.sport not in params["sports"]:
            return []
        if not activity.split_paces_s_per_km:
            unavailable = params["when_splits_unavailable"]
            # Under 1 km there is no complete split, so nothing is missing.
            if activity.distance_m < 1000 or unavailable == ACCEPT:
                return []
            return [Reason("splits_unavailable", unavailable, {"distance_m": math.floor(activity.distance_m)})]
        low, high = params["min_s_per_km"], params["max_s_per_km"]
        splits = activity.split_paces_s_per_km
        if (low is None or min(splits) >= low) and (high is None or max(splits) <= high):
            return []
        first_by_code = {}
        for km, pace in enumerate(splits, start=1):
            reason = out_of_range(pace, low, high, ("split_too_fast", "split_too_slow"),
                                  ("pace_s_per_km", "limit_s_per_km"), params["outcome"], km=km)
            if reason is not None:
                first_by_code.setdefault(reason.code, reason)
        return list(first_by_code.values())


class DistanceLimitsParams(RuleParams):
    min_m = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    max_m = optional_int(1)

    @validates_schema
    def _check_bounds(self, data, **kwargs):
        require_ordered(data, "min_m", "max_m")


class DistanceLimits(ValidationRule):
    name = "distance_limits"
    label = "Minimum and maximum distance"
    params_schema = DistanceLimitsParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        low, high = params["min_m"], params["max_m"]
        return [low <= activity.distance_m and (high is None or activity.distance_m <= high)
                for activity in activities]

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        return _listed(out_of_range(activity.distance_m, params["min_m"], params["max_m"],
                                    ("too_short", "too_long"), ("distance_m", "limit_m"), params["outcome"]))


class CountingWindowParams(RuleParams):
    # Device clocks drift: a start slightly after the upload is tolerated.
    future_tolerance_s = fields.Integer(strict=True, load_default=300, validate=validate.Range(min=0))


class CountingWindow(ValidationRule):
    """The activity starts at or after counting_start and has ended by counting_end.

    "Finish before 24:00 local on the last day" is a counting_end at that local midnight; an activity
    ending exactly at counting_end counts. A start later than its upload (beyond the tolerance) is in_future.
    """

    name = "counting_window"
    label = "Within the challenge's counting window"
    params_schema = CountingWindowParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        tolerance, first, last = _duration(params["future_tolerance_s"]), context.counting_start, context.counting_end
        return [first <= activity.start <= activity.received_at + tolerance and activity.end <= last
                for activity in activities]

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        outcome = params["outcome"]
        reasons = []
        if activity.start > activity.received_at + _duration(params["future_tolerance_s"]):
            reasons.append(Reason("in_future", outcome, {"start": _iso(activity.start),
                                                         "received_at": _iso(activity.received_at)}))
        if activity.start < context.counting_start:
            reasons.append(Reason("before_window", outcome, {"start": _iso(activity.start),
                                                             "counting_start": _iso(context.counting_start)}))
        if activity.end > context.counting_end:
            reasons.append(Reason("after_window", outcome, {"end": _iso(activity.end),
                                                            "counting_end": _iso(context.counting_end)}))
        return reasons


class SyncDeadlineParams(RuleParams):
    max_hours_after_start = optional_int(0)
    max_hours_after_end = optional_int(0)
    grace_hours = optional_int(0)  # after the challenge's counting_end

    @validates_schema
    def _check_some_deadline(self, data, **kwargs):
        require_one_of(data, "max_hours_after_start", "max_hours_after_end", "grace_hours")


# (param, basis, the moment it counts from): only the deadlines a ruleset names are computed.
DEADLINE_BASES = (
    ("max_hours_after_start", "activity_start", lambda activity, context: activity.start),
    ("max_hours_after_end", "activity_end", lambda activity, context: activity.end),
    ("grace_hours", "challenge_end", lambda activity, context: context.counting_end),
)


class SyncDeadline(ValidationRule):
    """The activity reached kindstride by its earliest deadline (received exactly at it counts).

    Deadlines: hours after the activity's start or end, and hours of grace after the challenge ends.
    """

    name = "sync_deadline"
    label = "Synced in time"
    params_schema = SyncDeadlineParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        # received by the earliest deadline: received by each
        passing = [True] * len(activities)
        for key, _basis, moment in DEADLINE_BASES:
            if params[key] is not None:
                delay = _duration(params[key] * 3600)
                passing = [passes and activity.received_at <= moment(activity, context) + delay
                           for activity, passes in zip(activities, passing, strict=True)]
        return passing

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        earliest = None  # (deadline, hours, basis): the first of equal deadlines names the basis
        for key, basis, moment in DEADLINE_BASES:
            hours = params[key]
            if hours is not None:
                deadline = moment(activity, context) + _duration(hours * 3600)
                if earliest is None or deadline < earliest[0]:
                    earliest = (deadline, hours, basis)
        deadline, hours, basis = earliest
        if activity.received_at <= deadline:
            return []
        return [Reason("synced_too_late", params["outcome"], {"received_at": _iso(activity.received_at),
                                                               "deadline": _iso(deadline), "hours": hours,
                                                               "basis": basis})]


class NoManualEntriesParams(RuleParams):
    reject_api = fields.Boolean(load_default=False)  # also refuse activities posted through the REST API


class NoManualEntries(ValidationRule):
    name = "no_manual_entries"
    label = "No manually entered activities"
    params_schema = NoManualEntriesParams
    uses_same_day = False

    @staticmethod
    def refused(params):
        return {"manual", "api"} if params["reject_api"] else {"manual"}

    def passes_many(self, activities, params, context):
        refused = self.refused(params)
        return [activity.source not in refused for activity in activities]

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        if activity.source not in self.refused(params):
            return []
        return [Reason("manual_not_allowed", params["outcome"], {"source": activity.source})]


class GpsRequiredParams(RuleParams):
    exempt_indoor = fields.Boolean(load_default=False)  # a treadmill run has no GPS; treadmill_policy judges it


class GpsRequired(ValidationRule):
    name = "gps_required"
    label = "GPS recording required"
    params_schema = GpsRequiredParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        exempt = params["exempt_indoor"]
        return [activity.has_gps or (activity.is_indoor and exempt) for activity in activities]

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        if activity.has_gps or (activity.is_indoor and params["exempt_indoor"]):
            return []
        return [Reason("no_gps", params["outcome"], {})]


class TreadmillPolicyParams(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES_OR_ACCEPT))


class TreadmillPolicy(ValidationRule):
    name = "treadmill_policy"
    label = "Indoor activities (treadmill, trainer)"
    params_schema = TreadmillPolicyParams
    uses_same_day = False

    def passes_many(self, activities, params, context):
        accepted = params["outcome"] == ACCEPT
        return [accepted or not activity.is_indoor for activity in activities]

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        if not activity.is_indoor or params["outcome"] == ACCEPT:
            return []
        return [Reason("indoor_activity", params["outcome"], {"sport": activity.sport})]


class DailyLimitsParams(RuleParams):
    max_activities = optional_int(1)
    max_distance_m = optional_int(1)

    @validates_schema
    def _check_some_limit(self, data, **kwargs):
        require_one_of(data, "max_activities", "max_distance_m")


class DailyLimits(ValidationRule):
    """Caps per local day, counting the participant's already-accepted activities of that day (from the
    context): the activity that would go over a cap gets the reason."""

    name = "daily_limits"
    label = "Daily limits"
    params_schema = DailyLimitsParams

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        reasons = []
        count = context.same_day_count + 1
        if params["max_activities"] is not None and count > params["max_activities"]:
            reasons.append(Reason("daily_activity_limit", params["outcome"],
                                  {"count": count, "limit": params["max_activities"]}))
        limit = params["max_distance_m"]
        if clearly_within(context.same_day_distance_m + activity.distance_m, None, limit):
            return reasons
        day_distance = Fraction(context.same_day_distance_m) + Fraction(activity.distance_m)
        reasons += _listed(out_of_range(day_distance, None, limit,
                                        (None, "daily_distance_limit"), ("day_distance_m", "limit_m"),
                                        params["outcome"]))
        return reasons


class PauseLimitParams(RuleParams):
    max_paused_s = optional_int(0)
    max_paused_ratio = FractionField(load_default=None, within=validate.Range(min=0, max=1))  # of elapsed time

    @validates_schema
    def _check_some_limit(self, data, **kwargs):
        require_one_of(data, "max_paused_s", "max_paused_ratio")


class PauseLimit(ValidationRule):
    """Paused time (elapsed minus moving) under a number of seconds and/or a share of the elapsed time."""

    name = "pause_limit"
    label = "Limit on paused time"
    params_schema = PauseLimitParams
    uses_same_day = False

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        elapsed = Fraction(activity.elapsed_s)
        paused = max(Fraction(0), elapsed - Fraction(activity.moving_s))  # moving > elapsed is a device quirk
        exceeded = {}
        if params["max_paused_s"] is not None and paused > params["max_paused_s"]:
            exceeded["limit_s"] = params["max_paused_s"]
        if params["max_paused_ratio"] is not None and paused > Fraction(params["max_paused_ratio"]) * elapsed:
            exceeded["limit_ratio"] = params["max_paused_ratio"]
        if not exceeded:
            return []
        return [Reason("too_much_paused_time", params["outcome"],
                       {"paused_s": math.ceil(paused), "elapsed_s": round(elapsed), **exceeded})]


VALIDATION_RULES = (AllowedSports, AveragePaceWindow, SplitPaceLimit, DistanceLimits, CountingWindow, SyncDeadline,
                    NoManualEntries, GpsRequired, TreadmillPolicy, DailyLimits, PauseLimit)
