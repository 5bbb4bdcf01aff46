"""What rule plugins receive and return. Rules are pure: the same facts, context and parameters
always give the same reasons and score, whatever order hooks ran in.

Scores are integers in the scoring rule's unit ("m" for metres, "s" for seconds, "pt" for thousandths
of a point), so totals are exact sums; multipliers are fractions.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import NamedTuple

from marshmallow import Schema

REJECT = "reject"
FLAG = "flag"
SPORTS = ("run", "walk", "ride", "hike", "swim", "wheelchair", "other")
SOURCES = ("device", "app", "manual", "api")


class ActivityFacts(NamedTuple):
    """An activity as rules see it: plain values, no database. Immutable; a named tuple rather than a frozen
    dataclass because an import makes a million of them (three times faster to make)."""

    sport: str  # one of SPORTS
    start: datetime  # timezone-aware, UTC
    elapsed_s: float  # wall-clock duration, pauses included
    moving_s: float  # timer or moving time, pauses excluded
    distance_m: float
    source: str  # one of SOURCES: a watch/bike computer file, a phone app, typed by hand, the REST API
    has_gps: bool
    received_at: datetime  # when it reached kindstride (the "sync" time), UTC
    is_indoor: bool = False  # treadmill, trainer
    # Moving time of each complete kilometre, in order; empty when the recording has no distance stream.
    split_paces_s_per_km: tuple[float, ...] = ()

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed_s)

    @property
    def average_pace_s_per_km(self) -> float | None:
        return self.moving_s / (self.distance_m / 1000) if self.distance_m > 0 else None


@dataclass(frozen=True)
class ChallengeContext:
    """What a rule may know about the challenge and the participant's other counted activities."""

    timezone: str  # IANA zone of the challenge: "local day" means this zone
    counting_start: datetime  # UTC
    counting_end: datetime  # UTC
    # Already-accepted activities of this participant in this challenge on the same local day.
    same_day_count: int = 0
    same_day_distance_m: float = 0.0


@dataclass(frozen=True)
class Reason:
    """Why a rule did not simply accept: a machine-readable code, an outcome and message parameters."""

    code: str
    outcome: str  # REJECT or FLAG
    params: dict = field(default_factory=dict)


class Strategy:
    name: str
    label: str
    params_schema: type[Schema]


class ValidationRule(Strategy):
    # Whether check() reads the context's same_day_count or same_day_distance_m. A rule that does not is run over
    # many activities at once (check_many) before their days are judged in order; the reasons of rules that do
    # are listed after the others'.
    uses_same_day = True

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        raise NotImplementedError

    def passes_many(self, activities: list[ActivityFacts], params: dict, context: ChallengeContext) -> list | None:
        """An optional quick test of many activities at once: for each, True only when check() would give no
        reason (False: check() is asked). None, the default: no quick test."""
        return None

    def check_many(self, activities: list[ActivityFacts], params: dict, context: ChallengeContext) -> list:
        """check() of each activity, in order, with the same context (an import judges a million activities this
        way), asked only about those that passes_many() does not pass."""
        check = self.check
        passing = self.passes_many(activities, params, context)
        if passing is None:
            return [check(activity, params, context) for activity in activities]
        return [() if passes else check(activity, params, context)
                for activity, passes in zip(activities, passing, strict=True)]


class ScoringRule(Strategy):
    unit: str  # "m", "s" or "pt"

    def score(self, activity: ActivityFacts, params: dict) -> int:
        raise NotImplementedError


class ScoreMultiplier(Strategy):
    def factor(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> Fraction:
        """1 when it does not apply; multipliers that apply are multiplied together."""
        raise NotImplementedError


class TeamAggregation(Strategy):
    def aggregate(self, member_scores: list[int], params: dict) -> int:
        """A team's score from its members' scores (members with no score count as 0)."""
        raise NotImplementedError


@dataclass(frozen=True)
class RulesetPreset:
    """A named, ready-made ruleset: the rules of a real event, expressed as strategies and parameters.

    `ruleset` has the keys "validation" (a list of {"rule", "params"}), "scoring" ({"rule", "params"}),
    "multipliers" (a list of {"rule", "params"}) and "team_aggregation" ({"rule", "params"}).
    """

    name: str
    label: str
    description: str
    ruleset: dict


@dataclass(frozen=True)
class PledgeFacts:
    """What a pledge rule may know: results and online donations within the pledge's scope."""

    currency: str
    scope_distance_m: int  # counted metres in the pledge's scope (challenge, one team, or one division)
    challenge_distance_m: int  # counted metres of the whole challenge
    goal_m: int | None  # the challenge's goal
    donations: int  # online donations to the challenge, net of refunds, in minor units


class PledgeRule(Strategy):
    def owed(self, params: dict, facts: PledgeFacts) -> int:
        """What the sponsor owes now, in minor units of facts.currency (never negative)."""
        raise NotImplementedError
