"""Built-in team aggregations: a team's integer score from its members' scores (members without one
are passed as 0)."""

from marshmallow import Schema, fields, validate

from kindstride.rules.contract import TeamAggregation

from .params import NoParams


class SumAggregation(TeamAggregation):
    name = "sum"
    label = "Sum of members' scores"
    params_schema = NoParams

    def aggregate(self, member_scores: list[int], params: dict) -> int:
        return sum(member_scores)


class AveragePerMember(TeamAggregation):
    """Rounded down, over every member including those who scored 0, so big teams gain nothing by size."""

    name = "average_per_member"
    label = "Average per member"
    params_schema = NoParams

    def aggregate(self, member_scores: list[int], params: dict) -> int:
        return sum(member_scores) // len(member_scores) if member_scores else 0


class TopNParams(Schema):
    n = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))


class TopNSum(TeamAggregation):
    name = "top_n_sum"
    label = "Sum of the best members' scores"
    params_schema = TopNParams

    def aggregate(self, member_scores: list[int], params: dict) -> int:
        return sum(sorted(member_scores, reverse=True)[:params["n"]])


TEAM_AGGREGATIONS = (SumAggregation, AveragePerMember, TopNSum)
