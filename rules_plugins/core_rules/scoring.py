"""Built-in scoring rules: an accepted activity's integer score in the rule's unit (rounded down)."""

import math
from fractions import Fraction

from marshmallow import Schema, fields, validate

from kindstride.rules.contract import SPORTS, ActivityFacts, ScoringRule

from .params import FractionField, NoParams


class FactScore(ScoringRule):
    """A recorded quantity of the activity, floored to whole units."""

    params_schema = NoParams
    fact: str  # the ActivityFacts attribute scored

    def score(self, activity: ActivityFacts, params: dict) -> int:
        return math.floor(getattr(activity, self.fact))


class DistanceScore(FactScore):
    name = "distance"
    label = "Distance"
    unit = "m"
    fact = "distance_m"


class MovingTimeScore(FactScore):
    name = "moving_time"
    label = "Moving time"
    unit = "s"
    fact = "moving_s"


class PointsParams(Schema):
    # Sports left out score nothing.
    points_per_km = fields.Dict(keys=fields.String(validate=validate.OneOf(SPORTS)),
                                values=FractionField(within=validate.Range(min=0)),
                                required=True, validate=validate.Length(min=1))


class PointsScore(ScoringRule):
    name = "points"
    label = "Points per km by sport"
    unit = "pt"  # thousandths of a point
    params_schema = PointsParams

    def score(self, activity: ActivityFacts, params: dict) -> int:
        per_km = params["points_per_km"].get(activity.sport, 0)
        # metres x points per km = thousandths of a point; exact, so 0.29 pt/km over 100 km is 29,000, not 28,999
        return math.floor(Fraction(activity.distance_m) * Fraction(per_km))


SCORING_RULES = (DistanceScore, MovingTimeScore, PointsScore)
