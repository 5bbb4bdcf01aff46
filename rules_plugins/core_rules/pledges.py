"""Pledge rules: what a sponsor owes, computed in exact integer arithmetic of minor units."""

from fractions import Fraction
from math import floor

from marshmallow import Schema, fields, validate

from kindstride.rules.contract import PledgeFacts, PledgeRule

from .params import FractionField

MAX_AMOUNT = 10**15  # a sanity bound on any amount, in minor units


class PerKmParams(Schema):
    rate_per_km = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_AMOUNT),
                                 metadata={"description": "minor units per valid km, e.g. 1000 VND"})
    cap = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=MAX_AMOUNT))


class PerKm(PledgeRule):
    name = "per_km"
    label = "A rate per valid km, with a cap"
    params_schema = PerKmParams

    def owed(self, params: dict, facts: PledgeFacts) -> int:
        owed = facts.scope_distance_m * params["rate_per_km"] // 1000
        return min(owed, params["cap"]) if params["cap"] is not None else owed


class MilestoneParams(Schema):
    amount = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_AMOUNT))
    goal_km = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=10**9),
                             metadata={"description": "defaults to the challenge's goal"})


class Milestone(PledgeRule):
    name = "milestone"
    label = "A fixed amount if the goal is reached"
    params_schema = MilestoneParams

    def owed(self, params: dict, facts: PledgeFacts) -> int:
        goal_m = params["goal_km"] * 1000 if params["goal_km"] else facts.goal_m
        return params["amount"] if goal_m and facts.challenge_distance_m >= goal_m else 0


class MatchingParams(Schema):
    ratio = FractionField(load_default="1", within=validate.Range(min=0, min_inclusive=False, max=100))
    cap = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_AMOUNT))


class Matching(PledgeRule):
    name = "matching"
    label = "Match online donations, up to a cap"
    params_schema = MatchingParams

    def owed(self, params: dict, facts: PledgeFacts) -> int:
        return min(floor(max(facts.donations, 0) * Fraction(params["ratio"])), params["cap"])


PLEDGE_RULES = (PerKm, Milestone, Matching)
