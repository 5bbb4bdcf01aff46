"""The built-in rule strategies (rules_plugins.core_rules): pure functions on crafted facts, no app, no database."""

import json
import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from kindstride.rules.contract import (
    FLAG,
    REJECT,
    SOURCES,
    SPORTS,
    ActivityFacts,
    ChallengeContext,
    Reason,
    RulesetPreset,
)
from rules_plugins import core_rules

HO_CHI_MINH = "Asia/Ho_Chi_Minh"


def local(*when) -> datetime:
    """A wall-clock time in Ho Chi Minh City (UTC+7), as the UTC datetime that facts carry."""
    return datetime(*when, tzinfo=ZoneInfo(HO_CHI_MINH)).astimezone(UTC)


COUNTING_START = local(2024, 9, 1)
COUNTING_END = local(2024, 9, 25)  # "finish before 24:00 local on 24 September"
TUESDAY_MORNING = local(2024, 9, 10, 6, 0)
SUNDAY = (2024, 9, 8)


def facts(**overrides) -> ActivityFacts:
    """A valid 5 km run at 6:00 min/km on a Tuesday morning, synced an hour after its start; override any fact."""
    start = overrides.get("start", TUESDAY_MORNING)
    values = {
        "sport": "run", "start": start, "elapsed_s": 1800.0, "moving_s": 1800.0, "distance_m": 5000.0,
        "source": "device", "has_gps": True, "received_at": start + timedelta(hours=1),
        "split_paces_s_per_km": (360.0,) * 5,
    }
    return ActivityFacts(**{**values, **overrides})


def run_at(pace_s_per_km, km=5, **overrides) -> ActivityFacts:
    """An even-paced run: every split and the average at `pace_s_per_km`."""
    moving = pace_s_per_km * km
    return facts(moving_s=moving, elapsed_s=moving, distance_m=km * 1000.0,
                 split_paces_s_per_km=(pace_s_per_km,) * km, **overrides)


def context(**overrides) -> ChallengeContext:
    values = {"timezone": HO_CHI_MINH, "counting_start": COUNTING_START, "counting_end": COUNTING_END}
    return ChallengeContext(**{**values, **overrides})


def _by_name(strategies):
    return {strategy.name: strategy for strategy in strategies}


VALIDATION = _by_name(core_rules.register_validation_rules())
SCORING = _by_name(core_rules.register_scoring_rules())
MULTIPLIERS = _by_name(core_rules.register_score_multipliers())
TEAMS = _by_name(core_rules.register_team_aggregations())
PRESETS = _by_name(core_rules.register_ruleset_presets())
STRATEGIES = {"validation": VALIDATION, "scoring": SCORING, "multipliers": MULTIPLIERS,
              "team_aggregation": TEAMS}


def loaded(strategy, params):
    return strategy.params_schema().load(params)


def check(rule, params, activity=None, ctx=None) -> list[Reason]:
    strategy = VALIDATION[rule]
    return strategy.check(activity or facts(), loaded(strategy, params), ctx or context())


def codes(rule, params, activity=None, ctx=None) -> list[str]:
    return [reason.code for reason in check(rule, params, activity, ctx)]


def factor(multiplier, params, activity) -> Fraction:
    strategy = MULTIPLIERS[multiplier]
    return strategy.factor(activity, loaded(strategy, params), context())


# --- registration -------------------------------------------------------------------------------------------------


def test_each_strategy_has_a_name_a_label_and_a_params_schema():
    for strategies in STRATEGIES.values():
        for name, strategy in strategies.items():
            assert name and strategy.label
            assert issubclass(strategy.params_schema, Schema)
    assert {rule.unit for rule in SCORING.values()} == {"m", "s", "pt"}


def test_the_documented_strategies_are_registered():
    assert set(VALIDATION) == {"allowed_sports", "average_pace_window", "split_pace_limit", "distance_limits",
                               "counting_window", "sync_deadline", "no_manual_entries", "gps_required",
                               "treadmill_policy", "daily_limits", "pause_limit"}
    assert set(SCORING) == {"distance", "moving_time", "points"}
    assert set(MULTIPLIERS) == {"weekday_multiplier", "date_multiplier"}
    assert set(TEAMS) == {"sum", "average_per_member", "top_n_sum"}
    assert set(PRESETS) == {"vn-charity-run-2023", "vn-charity-run-2024", "humanitarian-56-day", "company-month"}


# --- allowed_sports -----------------------------------------------------------------------------------------------


def test_allowed_sports_accepts_a_listed_sport():
    assert check("allowed_sports", {"sports": ["run", "walk"]}, facts(sport="walk")) == []


def test_allowed_sports_rejects_other_sports():
    assert check("allowed_sports", {"sports": ["run", "walk"]}, facts(sport="ride")) == [
        Reason("sport_not_allowed", REJECT, {"sport": "ride", "allowed": ["run", "walk"]})]


# --- average_pace_window ------------------------------------------------------------------------------------------

RUN_4_TO_15 = {"windows": {"run": {"min_s_per_km": 240, "max_s_per_km": 900}}}


@pytest.mark.parametrize("pace", [240, 360, 900])
def test_average_pace_within_the_window_or_exactly_at_a_limit_passes(pace):
    assert check("average_pace_window", RUN_4_TO_15, run_at(pace)) == []


def test_average_pace_exactly_at_the_limit_is_judged_exactly_not_in_floats():
    exactly_4_00 = facts(moving_s=996.0, elapsed_s=996.0, distance_m=4150.0)
    assert exactly_4_00.average_pace_s_per_km < 240  # 239.99999999999997 in floats
    assert check("average_pace_window", RUN_4_TO_15, exactly_4_00) == []


@settings(max_examples=300, deadline=None)
@given(distance=st.floats(100, 50_000), offset=st.integers(-3, 3),
       limit=st.sampled_from(["min_s_per_km", "max_s_per_km"]))
def test_average_pace_near_a_limit_is_judged_as_exact_fractions_judge_it(distance, offset, limit):
    # moving times a few floats either side of exactly the limit's pace: the float shortcut must never decide
    exact_moving = RUN_4_TO_15["windows"]["run"][limit] * distance / 1000
    moving = exact_moving
    for _ in range(abs(offset)):
        moving = math.nextafter(moving, math.inf if offset > 0 else -math.inf)
    pace = Fraction(moving) * 1000 / Fraction(distance)
    expected = ([] if 240 <= pace <= 900 else ["pace_too_fast" if pace < 240 else "pace_too_slow"])
    assert codes("average_pace_window", RUN_4_TO_15, facts(moving_s=moving, elapsed_s=moving,
                                                           distance_m=distance)) == expected


def test_an_average_pace_faster_than_the_window_is_pace_too_fast():
    assert check("average_pace_window", RUN_4_TO_15, run_at(239)) == [
        Reason("pace_too_fast", REJECT, {"pace_s_per_km": 239, "limit_s_per_km": 240})]


def test_an_average_pace_slower_than_the_window_is_pace_too_slow():
    assert check("average_pace_window", RUN_4_TO_15, run_at(901)) == [
        Reason("pace_too_slow", REJECT, {"pace_s_per_km": 901, "limit_s_per_km": 900})]


@pytest.mark.parametrize(("pace", "shown"), [(239.9, 239), (900.1, 901)])
def test_a_pace_beyond_a_limit_is_shown_rounded_away_from_it(pace, shown):
    assert check("average_pace_window", RUN_4_TO_15, run_at(pace))[0].params["pace_s_per_km"] == shown


def test_average_pace_uses_moving_time_not_elapsed_time():
    paused_a_lot = facts(moving_s=1500.0, elapsed_s=6000.0)  # 5:00 moving, 20:00 elapsed
    assert check("average_pace_window", RUN_4_TO_15, paused_a_lot) == []


def test_sports_without_a_window_pass():
    assert check("average_pace_window", RUN_4_TO_15, run_at(100, sport="ride")) == []


def test_an_activity_without_distance_has_no_average_pace_to_judge():
    assert check("average_pace_window", RUN_4_TO_15, facts(distance_m=0.0, split_paces_s_per_km=())) == []


def test_distance_without_moving_time_is_too_fast():
    assert codes("average_pace_window", RUN_4_TO_15, facts(moving_s=0.0)) == ["pace_too_fast"]


def test_the_pace_window_can_flag_instead_of_reject():
    assert check("average_pace_window", {**RUN_4_TO_15, "outcome": FLAG}, run_at(200))[0].outcome == FLAG


# --- split_pace_limit ---------------------------------------------------------------------------------------------

NO_SPLIT_UNDER_3_30 = {"min_s_per_km": 210}


def test_splits_exactly_at_the_limit_pass():
    assert check("split_pace_limit", NO_SPLIT_UNDER_3_30, run_at(210)) == []


def test_the_first_split_faster_than_the_limit_is_reported_with_its_km():
    activity = facts(split_paces_s_per_km=(300.0, 360.0, 209.5, 200.0, 300.0))
    assert check("split_pace_limit", NO_SPLIT_UNDER_3_30, activity) == [
        Reason("split_too_fast", REJECT, {"km": 3, "pace_s_per_km": 209, "limit_s_per_km": 210})]


def test_a_split_slower_than_the_limit_is_split_too_slow():
    walk_4_to_20 = {"min_s_per_km": 240, "max_s_per_km": 1200}
    activity = facts(sport="walk", split_paces_s_per_km=(700.0, 1200.0, 1201.0, 1300.0))
    assert check("split_pace_limit", walk_4_to_20, activity) == [
        Reason("split_too_slow", REJECT, {"km": 3, "pace_s_per_km": 1201, "limit_s_per_km": 1200})]


def test_a_too_fast_and_a_too_slow_split_are_both_reported():
    activity = facts(split_paces_s_per_km=(1300.0, 200.0))
    assert codes("split_pace_limit", {"min_s_per_km": 210, "max_s_per_km": 1200}, activity) == [
        "split_too_slow", "split_too_fast"]


def test_split_limits_apply_only_to_the_listed_sports():
    fast_ride = facts(sport="ride", split_paces_s_per_km=(90.0,) * 5)
    assert check("split_pace_limit", {**NO_SPLIT_UNDER_3_30, "sports": ["run", "walk"]}, fast_ride) == []
    assert codes("split_pace_limit", NO_SPLIT_UNDER_3_30, fast_ride) == ["split_too_fast"]


def test_an_activity_without_splits_is_flagged_by_default():
    assert check("split_pace_limit", NO_SPLIT_UNDER_3_30, facts(split_paces_s_per_km=())) == [
        Reason("splits_unavailable", FLAG, {"distance_m": 5000})]


@pytest.mark.parametrize(("choice", "expected"), [
    ("reject", [Reason("splits_unavailable", REJECT, {"distance_m": 5000})]),
    ("flag", [Reason("splits_unavailable", FLAG, {"distance_m": 5000})]),
    ("accept", []),
])
def test_what_happens_without_splits_is_a_parameter(choice, expected):
    params = {**NO_SPLIT_UNDER_3_30, "when_splits_unavailable": choice}
    assert check("split_pace_limit", params, facts(split_paces_s_per_km=())) == expected


def test_under_one_km_there_is_no_split_to_miss():
    short = facts(distance_m=999.0, split_paces_s_per_km=())
    assert check("split_pace_limit", {**NO_SPLIT_UNDER_3_30, "when_splits_unavailable": "reject"}, short) == []


# --- distance_limits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", [1000.0, 42195.0])
def test_distance_exactly_at_a_limit_passes(distance):
    assert check("distance_limits", {"min_m": 1000, "max_m": 42195}, facts(distance_m=distance)) == []


def test_an_activity_under_the_minimum_is_too_short():
    assert check("distance_limits", {"min_m": 1000}, facts(distance_m=999.9)) == [
        Reason("too_short", REJECT, {"distance_m": 999, "limit_m": 1000})]


def test_an_activity_over_the_maximum_is_too_long():
    assert check("distance_limits", {"min_m": 0, "max_m": 42195}, facts(distance_m=42195.1)) == [
        Reason("too_long", REJECT, {"distance_m": 42196, "limit_m": 42195})]


# --- counting_window ----------------------------------------------------------------------------------------------


def test_an_activity_starting_exactly_at_counting_start_counts():
    assert check("counting_window", {}, facts(start=COUNTING_START)) == []


def test_an_activity_starting_before_the_window_is_before_window():
    start = COUNTING_START - timedelta(seconds=1)
    assert check("counting_window", {}, facts(start=start)) == [
        Reason("before_window", REJECT, {"start": "2024-08-31T16:59:59+00:00",
                                         "counting_start": "2024-08-31T17:00:00+00:00"})]


def test_an_activity_ending_exactly_at_counting_end_counts():
    assert check("counting_window", {}, facts(start=COUNTING_END - timedelta(seconds=1800))) == []


def test_an_activity_that_does_not_finish_before_local_midnight_of_the_last_day_is_after_window():
    late = facts(start=local(2024, 9, 24, 23, 50), received_at=local(2024, 9, 25, 0, 30))  # ends 00:20 local
    assert check("counting_window", {}, late) == [
        Reason("after_window", REJECT, {"end": "2024-09-24T17:20:00+00:00",
                                        "counting_end": "2024-09-24T17:00:00+00:00"})]


def test_an_activity_starting_up_to_five_minutes_after_its_upload_is_tolerated():
    assert check("counting_window", {}, facts(received_at=TUESDAY_MORNING - timedelta(minutes=5))) == []


def test_an_activity_starting_more_than_five_minutes_after_its_upload_is_in_future():
    received = TUESDAY_MORNING - timedelta(minutes=5, seconds=1)
    assert check("counting_window", {}, facts(received_at=received)) == [
        Reason("in_future", REJECT, {"start": "2024-09-09T23:00:00+00:00",
                                     "received_at": "2024-09-09T22:54:59+00:00"})]


def test_the_future_tolerance_is_a_parameter():
    received = TUESDAY_MORNING - timedelta(seconds=1)
    assert codes("counting_window", {"future_tolerance_s": 0}, facts(received_at=received)) == ["in_future"]


# --- sync_deadline ------------------------------------------------------------------------------------------------


def test_an_activity_synced_exactly_at_the_deadline_counts():
    on_time = facts(received_at=TUESDAY_MORNING + timedelta(hours=72))
    assert check("sync_deadline", {"max_hours_after_start": 72}, on_time) == []


def test_an_activity_synced_after_hours_from_its_start_is_synced_too_late():
    late = facts(received_at=TUESDAY_MORNING + timedelta(hours=72, seconds=1))
    assert check("sync_deadline", {"max_hours_after_start": 72}, late) == [
        Reason("synced_too_late", REJECT, {"received_at": "2024-09-12T23:00:01+00:00",
                                           "deadline": "2024-09-12T23:00:00+00:00", "hours": 72,
                                           "basis": "activity_start"})]


def test_the_deadline_can_count_from_the_activity_end():
    end = TUESDAY_MORNING + timedelta(seconds=1800)
    params = {"max_hours_after_end": 72}
    assert check("sync_deadline", params, facts(received_at=end + timedelta(hours=72))) == []
    late = check("sync_deadline", params, facts(received_at=end + timedelta(hours=72, seconds=1)))
    assert [(reason.code, reason.params["basis"]) for reason in late] == [("synced_too_late", "activity_end")]


def test_the_earliest_deadline_applies_near_the_end_of_the_challenge():
    last_day = local(2024, 9, 24, 6, 0)
    params = {"max_hours_after_start": 72, "grace_hours": 12}
    assert check("sync_deadline", params, facts(start=last_day, received_at=COUNTING_END + timedelta(hours=12))) == []
    late = check("sync_deadline", params, facts(start=last_day, received_at=local(2024, 9, 25, 12, 1)))
    assert late == [Reason("synced_too_late", REJECT, {"received_at": "2024-09-25T05:01:00+00:00",
                                                       "deadline": "2024-09-25T05:00:00+00:00", "hours": 12,
                                                       "basis": "challenge_end"})]


# --- no_manual_entries, gps_required, treadmill_policy -------------------------------------------------------------


def test_a_manual_entry_is_manual_not_allowed():
    assert check("no_manual_entries", {}, facts(source="manual")) == [
        Reason("manual_not_allowed", REJECT, {"source": "manual"})]


@pytest.mark.parametrize("source", ["device", "app", "api"])
def test_recorded_and_api_activities_pass_by_default(source):
    assert check("no_manual_entries", {}, facts(source=source)) == []


def test_api_activities_can_be_refused_too():
    assert codes("no_manual_entries", {"reject_api": True}, facts(source="api")) == ["manual_not_allowed"]


def test_manual_entries_can_be_flagged_for_review():
    assert check("no_manual_entries", {"outcome": "flag"}, facts(source="manual"))[0].outcome == FLAG


def test_an_activity_without_gps_is_no_gps():
    assert check("gps_required", {}, facts(has_gps=False)) == [Reason("no_gps", REJECT, {})]
    assert check("gps_required", {}, facts()) == []


def test_indoor_activities_can_be_exempt_from_gps():
    treadmill = facts(has_gps=False, is_indoor=True)
    assert check("gps_required", {"exempt_indoor": True}, treadmill) == []
    assert codes("gps_required", {}, treadmill) == ["no_gps"]


@pytest.mark.parametrize(("policy", "expected"), [
    ("accept", []),
    ("flag", [Reason("indoor_activity", FLAG, {"sport": "run"})]),
    ("reject", [Reason("indoor_activity", REJECT, {"sport": "run"})]),
])
def test_the_treadmill_policy_decides_indoor_activities(policy, expected):
    assert check("treadmill_policy", {"outcome": policy}, facts(is_indoor=True)) == expected
    assert check("treadmill_policy", {"outcome": policy}, facts()) == []


# --- daily_limits -------------------------------------------------------------------------------------------------


def test_the_activity_reaching_the_daily_count_passes_and_the_next_is_daily_activity_limit():
    params = {"max_activities": 3}
    assert check("daily_limits", params, ctx=context(same_day_count=2)) == []
    assert check("daily_limits", params, ctx=context(same_day_count=3)) == [
        Reason("daily_activity_limit", REJECT, {"count": 4, "limit": 3})]


def test_the_activity_that_takes_the_day_over_the_distance_cap_is_daily_distance_limit():
    params = {"max_distance_m": 20000}
    assert check("daily_limits", params, ctx=context(same_day_distance_m=15000.0)) == []
    assert check("daily_limits", params, ctx=context(same_day_distance_m=15000.5)) == [
        Reason("daily_distance_limit", REJECT, {"day_distance_m": 20001, "limit_m": 20000})]


def test_daily_limits_can_flag_instead():
    params = {"max_activities": 1, "outcome": "flag"}
    assert check("daily_limits", params, ctx=context(same_day_count=1)) == [
        Reason("daily_activity_limit", FLAG, {"count": 2, "limit": 1})]


# --- pause_limit --------------------------------------------------------------------------------------------------

TEN_MINUTES_PAUSED = {"elapsed_s": 3600.0, "moving_s": 3000.0}


def test_paused_time_exactly_at_the_limit_passes():
    assert check("pause_limit", {"max_paused_s": 600}, facts(**TEN_MINUTES_PAUSED)) == []
    assert check("pause_limit", {"max_paused_ratio": "1/6"}, facts(**TEN_MINUTES_PAUSED)) == []


def test_paused_time_over_the_seconds_limit_is_too_much_paused_time():
    assert check("pause_limit", {"max_paused_s": 599}, facts(**TEN_MINUTES_PAUSED)) == [
        Reason("too_much_paused_time", REJECT, {"paused_s": 600, "elapsed_s": 3600, "limit_s": 599})]


def test_paused_time_over_the_share_of_elapsed_time_is_too_much_paused_time():
    assert check("pause_limit", {"max_paused_ratio": "0.16"}, facts(**TEN_MINUTES_PAUSED)) == [
        Reason("too_much_paused_time", REJECT, {"paused_s": 600, "elapsed_s": 3600, "limit_ratio": "4/25"})]


def test_moving_time_longer_than_elapsed_time_is_no_pause():
    assert check("pause_limit", {"max_paused_s": 0}, facts(elapsed_s=1700.0, moving_s=1800.0)) == []


# --- scoring ------------------------------------------------------------------------------------------------------


def score(rule, params, activity):
    strategy = SCORING[rule]
    return strategy.score(activity, loaded(strategy, params))


def test_distance_scores_whole_metres_rounded_down():
    assert score("distance", {}, facts(distance_m=5000.9)) == 5000
    assert SCORING["distance"].unit == "m"


def test_moving_time_scores_whole_seconds_rounded_down():
    assert score("moving_time", {}, facts(moving_s=1799.99)) == 1799
    assert SCORING["moving_time"].unit == "s"


def test_points_score_thousandths_of_a_point_per_sport():
    params = {"points_per_km": {"run": "3/2", "walk": 1}}
    assert score("points", params, facts(distance_m=1234.0)) == 1851
    assert score("points", params, facts(sport="walk", distance_m=1234.0)) == 1234
    assert score("points", params, facts(sport="ride", distance_m=1234.0)) == 0
    assert SCORING["points"].unit == "pt"


@pytest.mark.parametrize("per_km", ["0.29", 0.29])
def test_points_are_exact_where_floats_would_round_down(per_km):
    assert 100000 * 0.29 < 29000  # 28999.999999999996
    assert score("points", {"points_per_km": {"run": per_km}}, facts(distance_m=100000.0)) == 29000


# --- multipliers --------------------------------------------------------------------------------------------------

SUNDAY_DOUBLE = {"weekdays": [6], "factor": "2", "must_end_same_day": True}


def test_a_sunday_activity_counts_double():
    assert factor("weekday_multiplier", SUNDAY_DOUBLE, facts(start=local(*SUNDAY, 6, 0))) == 2


def test_the_weekday_is_the_local_one():
    sunday_00_00_local = local(*SUNDAY, 0, 0)
    assert sunday_00_00_local.weekday() == 5  # still Saturday in UTC
    assert factor("weekday_multiplier", SUNDAY_DOUBLE, facts(start=sunday_00_00_local)) == 2
    saturday_23_59_local = local(2024, 9, 7, 23, 59)
    assert factor("weekday_multiplier", SUNDAY_DOUBLE, facts(start=saturday_23_59_local, elapsed_s=60.0)) == 1


def test_a_sunday_activity_that_ends_after_local_midnight_does_not_count_double_when_it_must_end_that_day():
    past_midnight = facts(start=local(*SUNDAY, 23, 50), elapsed_s=1200.0)  # ends Monday 00:10 local
    assert factor("weekday_multiplier", SUNDAY_DOUBLE, past_midnight) == 1
    assert factor("weekday_multiplier", {**SUNDAY_DOUBLE, "must_end_same_day": False}, past_midnight) == 2


def test_a_sunday_activity_ending_exactly_at_local_midnight_counts_double():
    to_midnight = facts(start=local(*SUNDAY, 23, 50), elapsed_s=600.0)
    assert factor("weekday_multiplier", SUNDAY_DOUBLE, to_midnight) == 2


def test_a_weekday_factor_can_be_a_fraction():
    result = factor("weekday_multiplier", {"weekdays": [1, 3], "factor": "3/2"}, facts())
    assert result == Fraction(3, 2) and isinstance(result, Fraction)


def test_a_date_multiplier_applies_on_its_local_dates():
    national_day = {"dates": ["2024-09-02"], "factor": 3}
    assert factor("date_multiplier", national_day, facts(start=local(2024, 9, 2, 0, 30))) == 3
    assert factor("date_multiplier", national_day, facts(start=local(2024, 9, 1, 23, 30))) == 1


def test_a_factor_loads_as_its_canonical_fraction_text():
    for written in ("1.5", "3/2", 1.5, " 6/4 "):
        assert loaded(MULTIPLIERS["weekday_multiplier"], {"weekdays": [6], "factor": written})["factor"] == "3/2"


# --- team aggregations ----------------------------------------------------------------------------------------------


def aggregate(name, params, member_scores):
    strategy = TEAMS[name]
    return strategy.aggregate(member_scores, loaded(strategy, params))


def test_sum_adds_members_scores():
    assert aggregate("sum", {}, [3000, 0, 5000]) == 8000


def test_average_per_member_rounds_down_and_counts_members_without_a_score():
    assert aggregate("average_per_member", {}, [1000, 0, 0]) == 333
    assert aggregate("average_per_member", {}, []) == 0


def test_top_n_sum_adds_the_best_n_scores():
    assert aggregate("top_n_sum", {"n": 2}, [5, 1, 9, 3]) == 14
    assert aggregate("top_n_sum", {"n": 10}, [5, 1]) == 6


# --- parameter schemas ----------------------------------------------------------------------------------------------


def _names_in(messages) -> set[str]:
    """Every field name and every message text in a marshmallow error structure."""
    if isinstance(messages, dict):
        return {str(key) for key in messages} | {name for value in messages.values() for name in _names_in(value)}
    if isinstance(messages, list):
        return {name for item in messages for name in _names_in(item)}
    return {str(messages)}


@pytest.mark.parametrize(("kind", "name", "params", "field"), [
    ("validation", "allowed_sports", {}, "sports"),
    ("validation", "allowed_sports", {"sports": []}, "sports"),
    ("validation", "allowed_sports", {"sports": ["bike"]}, "sports"),
    ("validation", "allowed_sports", {"sports": ["run"], "outcome": "ignore"}, "outcome"),
    ("validation", "average_pace_window", {"windows": {"run": {"min_s_per_km": 0}}}, "min_s_per_km"),
    ("validation", "average_pace_window", {"windows": {"run": {"min_s_per_km": 240.5}}}, "min_s_per_km"),
    ("validation", "average_pace_window", {"windows": {"run": {"min_s_per_km": 900, "max_s_per_km": 240}}},
     "max_s_per_km"),
    ("validation", "average_pace_window", {"windows": {"run": {}}}, "min_s_per_km"),
    ("validation", "split_pace_limit", {}, "min_s_per_km"),
    ("validation", "split_pace_limit", {"min_s_per_km": 210, "when_splits_unavailable": "ignore"},
     "when_splits_unavailable"),
    ("validation", "distance_limits", {"max_m": 5000}, "min_m"),
    ("validation", "distance_limits", {"min_m": -1}, "min_m"),
    ("validation", "distance_limits", {"min_m": 1000, "max_m": 500}, "max_m"),
    ("validation", "distance_limits", {"min_m": 1000, "min_km": 1}, "min_km"),
    ("validation", "counting_window", {"future_tolerance_s": -5}, "future_tolerance_s"),
    ("validation", "sync_deadline", {}, "max_hours_after_start"),
    ("validation", "sync_deadline", {"max_hours_after_start": -1}, "max_hours_after_start"),
    ("validation", "no_manual_entries", {"reject_api": "sometimes"}, "reject_api"),
    ("validation", "treadmill_policy", {}, "outcome"),
    ("validation", "daily_limits", {"max_activities": 0}, "max_activities"),
    ("validation", "daily_limits", {}, "max_distance_m"),
    ("validation", "pause_limit", {"max_paused_ratio": "3/2"}, "max_paused_ratio"),
    ("validation", "pause_limit", {"max_paused_ratio": "half"}, "max_paused_ratio"),
    ("scoring", "points", {"points_per_km": {"run": "lots"}}, "points_per_km"),
    ("scoring", "points", {"points_per_km": {"run": "-1"}}, "points_per_km"),
    ("multipliers", "weekday_multiplier", {"weekdays": [7], "factor": "2"}, "weekdays"),
    ("multipliers", "weekday_multiplier", {"weekdays": [6]}, "factor"),
    ("multipliers", "weekday_multiplier", {"weekdays": [6], "factor": "0"}, "factor"),
    ("multipliers", "weekday_multiplier", {"weekdays": [6], "factor": True}, "factor"),
    ("multipliers", "date_multiplier", {"dates": ["2024-13-01"], "factor": "2"}, "dates"),
    ("team_aggregation", "top_n_sum", {"n": 0}, "n"),
    ("team_aggregation", "top_n_sum", {}, "n"),
])
def test_params_schemas_refuse_bad_params_naming_the_field(kind, name, params, field):
    with pytest.raises(ValidationError) as error:
        loaded(STRATEGIES[kind][name], params)
    names = _names_in(error.value.messages)
    assert field in names or any(field in text for text in names), error.value.messages


# --- presets --------------------------------------------------------------------------------------------------------


def _preset_entries(preset: RulesetPreset):
    ruleset = preset.ruleset
    yield from (("validation", entry) for entry in ruleset["validation"])
    yield from (("multipliers", entry) for entry in ruleset["multipliers"])
    yield "scoring", ruleset["scoring"]
    yield "team_aggregation", ruleset["team_aggregation"]


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_each_preset_uses_registered_strategies_with_params_their_schemas_accept(preset):
    assert preset.label and preset.description
    assert set(preset.ruleset) == {"validation", "scoring", "multipliers", "team_aggregation"}
    for kind, entry in _preset_entries(preset):
        assert set(entry) == {"rule", "params"}
        loaded(STRATEGIES[kind][entry["rule"]], entry["params"])


def test_presets_are_built_afresh_so_editing_one_changes_no_one_else():
    core_rules.register_ruleset_presets()[0].ruleset["validation"].clear()
    assert core_rules.register_ruleset_presets()[0].ruleset["validation"]


def verdict(preset_name, activity, ctx=None) -> list[Reason]:
    """The reasons all of a preset's validation rules give, in ruleset order."""
    return [reason for entry in PRESETS[preset_name].ruleset["validation"]
            for reason in check(entry["rule"], entry["params"], activity, ctx)]


def preset_factor(preset_name, activity) -> Fraction:
    result = Fraction(1)
    for entry in PRESETS[preset_name].ruleset["multipliers"]:
        result *= factor(entry["rule"], entry["params"], activity)
    return result


AVERAGE_3_55 = run_at(235)
SPLIT_3_25 = facts(moving_s=1500.0, elapsed_s=1500.0, split_paces_s_per_km=(300.0, 205.0, 335.0, 330.0, 330.0))
AVERAGE_5_00_WITH_4_00_SPLITS = facts(moving_s=1500.0, elapsed_s=1500.0,
                                      split_paces_s_per_km=(240.0, 240.0, 300.0, 360.0, 360.0))


def test_the_2024_charity_run_rejects_a_3_55_average():
    assert [(reason.code, reason.outcome) for reason in verdict("vn-charity-run-2024", AVERAGE_3_55)] == [
        ("pace_too_fast", REJECT)]


def test_the_2024_charity_run_rejects_a_3_25_split():
    assert verdict("vn-charity-run-2024", SPLIT_3_25) == [
        Reason("split_too_fast", REJECT, {"km": 2, "pace_s_per_km": 205, "limit_s_per_km": 210})]


def test_the_2024_charity_run_accepts_a_5_00_run_with_4_00_splits():
    assert verdict("vn-charity-run-2024", AVERAGE_5_00_WITH_4_00_SPLITS) == []


def test_the_2023_charity_run_accepts_the_3_55_average():
    assert verdict("vn-charity-run-2023", AVERAGE_3_55) == []


@pytest.mark.parametrize("preset", ["vn-charity-run-2023", "vn-charity-run-2024"])
def test_the_charity_runs_refuse_what_their_published_rules_refuse(preset):
    assert [reason.code for reason in verdict(preset, facts(sport="walk"))] == ["sport_not_allowed"]
    assert [reason.code for reason in verdict(preset, facts(source="manual"))] == ["manual_not_allowed"]
    short = facts(distance_m=900.0, moving_s=324.0, elapsed_s=324.0, split_paces_s_per_km=())
    assert [reason.code for reason in verdict(preset, short)] == ["too_short"]
    late = facts(received_at=TUESDAY_MORNING + timedelta(hours=72, minutes=1))
    assert [reason.code for reason in verdict(preset, late)] == ["synced_too_late"]


def test_the_charity_runs_count_sunday_double_only_when_finished_by_local_midnight():
    sunday_morning = facts(start=local(*SUNDAY, 5, 30))
    assert preset_factor("vn-charity-run-2024", sunday_morning) == 2
    assert preset_factor("vn-charity-run-2024", facts(start=local(*SUNDAY, 23, 50))) == 1
    assert preset_factor("vn-charity-run-2024", facts()) == 1


def test_the_humanitarian_campaign_checks_every_km_of_walks_and_runs():
    walk = facts(sport="walk", moving_s=3600.0, elapsed_s=3600.0, split_paces_s_per_km=(720.0,) * 5)
    assert verdict("humanitarian-56-day", walk) == []
    dawdle = facts(sport="walk", split_paces_s_per_km=(720.0, 1260.0, 720.0, 720.0, 720.0))
    assert [reason.code for reason in verdict("humanitarian-56-day", dawdle)] == ["split_too_slow"]
    assert [reason.code for reason in verdict("humanitarian-56-day", facts(sport="ride"))] == ["sport_not_allowed"]


def test_the_company_month_flags_manual_entries_for_review():
    assert verdict("company-month", facts(sport="ride", source="manual")) == [
        Reason("manual_not_allowed", FLAG, {"source": "manual"})]
    assert PRESETS["company-month"].ruleset["team_aggregation"]["rule"] == "average_per_member"


# --- properties -----------------------------------------------------------------------------------------------------

RULE_EXAMPLES = {
    "allowed_sports": [{"sports": ["run", "walk"]}],
    "average_pace_window": [{"windows": {"run": {"min_s_per_km": 240, "max_s_per_km": 900},
                                         "walk": {"max_s_per_km": 1200}}}],
    "split_pace_limit": [{"min_s_per_km": 210}, {"min_s_per_km": 240, "max_s_per_km": 1200, "sports": ["walk"],
                                                  "when_splits_unavailable": "reject"}],
    "distance_limits": [{"min_m": 1000, "max_m": 100000}],
    "counting_window": [{}, {"future_tolerance_s": 0, "outcome": "flag"}],
    "sync_deadline": [{"max_hours_after_start": 72, "max_hours_after_end": 48, "grace_hours": 0}],
    "no_manual_entries": [{"reject_api": True}],
    "gps_required": [{"exempt_indoor": True}, {}],
    "treadmill_policy": [{"outcome": "flag"}, {"outcome": "accept"}],
    "daily_limits": [{"max_activities": 2, "max_distance_m": 50000}],
    "pause_limit": [{"max_paused_s": 1800, "max_paused_ratio": "1/2"}],
}
VALIDATION_CASES = [(rule, params) for rule, examples in RULE_EXAMPLES.items() for params in examples] + [
    (entry["rule"], entry["params"]) for preset in PRESETS.values() for entry in preset.ruleset["validation"]]

SCORING_EXAMPLES = [("distance", {}), ("moving_time", {}), ("points", {"points_per_km": {"run": "3/2", "walk": 1}})]
MULTIPLIER_EXAMPLES = [("weekday_multiplier", SUNDAY_DOUBLE), ("date_multiplier", {"dates": ["2024-09-02"],
                                                                                   "factor": "3"})]


def test_the_property_examples_cover_every_validation_rule():
    assert set(RULE_EXAMPLES) == set(VALIDATION)


def _every_example():
    yield from (("validation", rule, params) for rule, params in VALIDATION_CASES)
    yield from (("scoring", rule, params) for rule, params in SCORING_EXAMPLES)
    yield from (("multipliers", rule, params) for rule, params in MULTIPLIER_EXAMPLES)
    yield "team_aggregation", "top_n_sum", {"n": 3}
    for preset in PRESETS.values():
        yield from ((kind, entry["rule"], entry["params"]) for kind, entry in _preset_entries(preset))


@pytest.mark.parametrize(("kind", "name", "params"), list(_every_example()))
def test_loaded_params_are_plain_json_and_load_again_unchanged(kind, name, params):
    # The platform stores a ruleset's loaded parameters and loads them again to evaluate.
    strategy = STRATEGIES[kind][name]
    once = loaded(strategy, params)
    assert loaded(strategy, json.loads(json.dumps(once))) == once


def _amounts(upper):
    return st.floats(min_value=0, max_value=upper, allow_nan=False, allow_infinity=False)


_moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
any_facts = st.builds(
    ActivityFacts, sport=st.sampled_from(SPORTS), start=_moments, elapsed_s=_amounts(1e7), moving_s=_amounts(1e7),
    distance_m=_amounts(1e6), source=st.sampled_from(SOURCES), has_gps=st.booleans(), received_at=_moments,
    is_indoor=st.booleans(), split_paces_s_per_km=st.lists(_amounts(1e5), max_size=30).map(tuple),
)
any_context = st.builds(
    ChallengeContext, timezone=st.sampled_from([HO_CHI_MINH, "UTC", "America/St_Johns", "Pacific/Kiritimati"]),
    counting_start=_moments, counting_end=_moments, same_day_count=st.integers(0, 1000),
    same_day_distance_m=_amounts(1e7),
)


@settings(max_examples=400, deadline=None)
@given(case=st.sampled_from(VALIDATION_CASES), activity=any_facts, ctx=any_context)
def test_every_validation_rule_is_deterministic_and_never_raises(case, activity, ctx):
    rule, params = case
    reasons = check(rule, params, activity, ctx)
    assert reasons == check(rule, params, activity, ctx)
    assert len({reason.code for reason in reasons}) == len(reasons)
    for reason in reasons:
        assert reason.outcome in (REJECT, FLAG)
        json.dumps(reason.params)  # reasons are stored and shown: plain values only


@settings(max_examples=200, deadline=None)
@given(scoring=st.sampled_from(SCORING_EXAMPLES), multiplier=st.sampled_from(MULTIPLIER_EXAMPLES),
       activity=any_facts, ctx=any_context)
def test_scores_are_non_negative_integers_and_factors_positive_fractions(scoring, multiplier, activity, ctx):
    points = score(*scoring, activity)
    assert isinstance(points, int) and points >= 0
    name, params = multiplier
    result = MULTIPLIERS[name].factor(activity, loaded(MULTIPLIERS[name], params), ctx)
    assert isinstance(result, Fraction) and result > 0
    assert result == MULTIPLIERS[name].factor(activity, loaded(MULTIPLIERS[name], params), ctx)


# Activities near every rule's limits in the example window: the quick tests of check_many must pass exactly those
# that check() passes, and let check() judge the rest.
_near_limits = st.builds(
    lambda sport, start, pace, km, metres, paused, delay_h, source, gps, indoor, jitter, splits: facts(
        sport=sport, start=start, moving_s=pace * (km + metres / 1000), elapsed_s=pace * (km + metres / 1000) * paused,
        distance_m=km * 1000.0 + metres, source=source, has_gps=gps, received_at=start + timedelta(hours=delay_h),
        is_indoor=indoor, split_paces_s_per_km=tuple(pace + j for j in jitter[:km]) if splits else ()),
    sport=st.sampled_from(["run", "walk", "ride"]),
    start=st.datetimes(min_value=datetime(2024, 8, 31, 12), max_value=datetime(2024, 9, 25), timezones=st.just(UTC)),
    pace=st.sampled_from([150, 179.9, 180, 210, 240, 360, 900, 1200, 1200.1]), km=st.sampled_from([0, 1, 2, 5, 42]),
    metres=st.sampled_from([0, 0.5, 999.9]), splits=st.booleans(),
    paused=st.sampled_from([1, 1.2, 1.5, 2.5]), delay_h=st.sampled_from([-0.1, -0.0833, 0, 1, 72, 72.01, 100]),
    source=st.sampled_from(SOURCES), gps=st.booleans(), indoor=st.booleans(),
    jitter=st.lists(st.sampled_from([0, -30, 30, -0.1, 0.1]), min_size=42, max_size=42),
)


@settings(max_examples=600, deadline=None)
@given(case=st.sampled_from(VALIDATION_CASES), activities=st.lists(_near_limits | any_facts, max_size=20),
       ctx=st.just(context()) | any_context)
def test_checking_many_activities_at_once_gives_each_the_reasons_check_gives(case, activities, ctx):
    rule, params = case
    strategy = VALIDATION[rule]
    params = loaded(strategy, params)
    expected = [strategy.check(activity, params, ctx) for activity in activities]
    assert [list(reasons) for reasons in strategy.check_many(activities, params, ctx)] == expected


def test_only_daily_limits_reads_the_days_other_activities():
    # The others are asked about many activities at once, before any day is judged in order.
    assert {name for name, rule in VALIDATION.items() if rule.uses_same_day} == {"daily_limits"}


def test_a_plugin_rule_that_is_a_plain_object_is_asked_one_activity_at_a_time():
    from kindstride.activities.evaluation import judge
    from kindstride.challenges.rulesets import ResolvedRuleset

    class Plain:  # a plugin's strategy need not subclass ValidationRule
        name, label, params_schema = "plain", "Plain", Schema

        def check(self, activity, params, context):
            return [Reason("short", FLAG, {})] if activity.distance_m < 2000 else []

    distance = VALIDATION["distance_limits"]
    ruleset = ResolvedRuleset(validation=((Plain(), {}), (distance, loaded(distance, {"min_m": 1000}))),
                              scoring=(SCORING["distance"], {}), multipliers=(), team_aggregation=None)
    assert [rule.name for rule, _params in ruleset.day_dependent] == ["plain"]
    assert [rule.name for rule, _params in ruleset.day_independent] == ["distance_limits"]
    short = judge(facts(distance_m=1500.0), ruleset, context())
    assert (short.status, [reason.code for reason in short.reasons]) == ("flagged", ["short"])
    assert judge(facts(), ruleset, context()).status == "accepted"
