"""Built-in validation and scoring rules."""

from marshmallow import Schema, fields, validate

from kindstride.hookspecs import hookimpl
from kindstride.rules.contract import REJECT, ActivityFacts, Reason, ScoringRule, ValidationRule

SPORTS = ("run", "walk", "ride", "hike", "swim", "wheelchair")


class AllowedSportsParams(Schema):
    sports = fields.List(fields.String(validate=validate.OneOf(SPORTS)), required=True,
                         validate=validate.Length(min=1))


class AllowedSports(ValidationRule):
    name = "allowed_sports"
    label = "Allowed sport types"
    params_schema = AllowedSportsParams

    def check(self, activity: ActivityFacts, params: dict) -> list[Reason]:
        if activity.sport in params["sports"]:
            return []
        return [Reason("sport_not_allowed", REJECT, {"sport": activity.sport, "allowed": list(params["sports"])})]


class NoParams(Schema):
    pass


class DistanceScore(ScoringRule):
    name = "distance_km"
    label = "Kilometres"
    params_schema = NoParams

    def score(self, activity: ActivityFacts, params: dict) -> float:
        return activity.distance_m / 1000


@hookimpl
def register_validation_rules():
    return [AllowedSports()]


@hookimpl
def register_scoring_rules():
    return [DistanceScore()]
