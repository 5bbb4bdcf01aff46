"""What a validation or scoring rule receives and returns. Rules are pure: the same facts and
parameters always give the same reasons and score."""

from dataclasses import dataclass, field
from datetime import datetime

from marshmallow import Schema

REJECT = "reject"
FLAG = "flag"


@dataclass(frozen=True)
class ActivityFacts:
    """An activity as rules see it: plain values, no database."""

    sport: str
    start: datetime  # UTC
    elapsed_s: float
    moving_s: float
    distance_m: float
    source: str  # "device", "app", "manual", "api"
    has_gps: bool
    split_paces_s_per_km: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Reason:
    """Why a rule did not simply accept: a machine-readable code, an outcome and message parameters."""

    code: str
    outcome: str  # REJECT or FLAG
    params: dict = field(default_factory=dict)


class ValidationRule:
    name: str
    label: str
    params_schema: type[Schema]

    def check(self, activity: ActivityFacts, params: dict) -> list[Reason]:
        raise NotImplementedError


class ScoringRule:
    name: str
    label: str
    params_schema: type[Schema]

    def score(self, activity: ActivityFacts, params: dict) -> float:
        raise NotImplementedError
