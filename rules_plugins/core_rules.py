"""Built-in validation and scoring rules."""

from marshmallow import Schema, fields, validate

from kindstride.hookspecs import hookimpl
from kindstride.rules.contract import (
    REJECT,
    SPORTS,
    ActivityFacts,
    ChallengeContext,
    Reason,
    ScoringRule,
    ValidationRule,
)


class AllowedSportsParams(Schema):
    sports = fields.List(fields.String(validate=validate.OneOf(SPORTS)), required=True,
                         validate=validate.Length(min=1))


class AllowedSports(ValidationRule):
    name = "allowed_sports"
    label = "Allowed sport types"
    params_schema = AllowedSportsParams

    def check(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> list[Reason]:
        if activity.sport in params["sports"]:
            return []
        return [Reason("sport_not_allowed", REJECT, {"sport": activity.sport, "allowed": list(params["sports"])})]


class NoParams(Schema):
    pass


class DistanceScore(ScoringRule):
    name = "distance"
    label = "Distance"
    unit = "m"
    params_schema = NoParams

    def score(self, activity: ActivityFacts, params: dict) -> int:
        return int(activity.distance_m)


@hookimpl
def register_validation_rules():
    return [AllowedSports()]


@hookimpl
def register_scoring_rules():
    return [DistanceScore()]
