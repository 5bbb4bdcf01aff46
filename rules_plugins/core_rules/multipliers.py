"""Built-in score multipliers: factors for activities on particular local days of the challenge."""

from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from marshmallow import Schema, fields, validate

from kindstride.rules.contract import ActivityFacts, ChallengeContext, ScoreMultiplier

from .params import FractionField, IsoDateField

UNCHANGED = Fraction(1)  # (immutable: one instance serves every plain day)


class LocalDayParams(Schema):
    factor = FractionField(required=True, within=validate.Range(min=0, min_inclusive=False))
    must_end_same_day = fields.Boolean(load_default=False)


class LocalDayMultiplier(ScoreMultiplier):
    """`factor` for an activity whose START falls on a chosen day, in the challenge's time zone.

    With must_end_same_day the activity must also have ended by the local midnight closing that day (ending
    at exactly 00:00 counts); one that runs past it gets factor 1 but is otherwise still counted. Without it,
    the start date alone decides.
    """

    def applies_on(self, day: date, params: dict) -> bool:
        raise NotImplementedError

    def factor(self, activity: ActivityFacts, params: dict, context: ChallengeContext) -> Fraction:
        zone = ZoneInfo(context.timezone)
        day = activity.start.astimezone(zone).date()
        if not self.applies_on(day, params):
            return UNCHANGED
        if params["must_end_same_day"]:
            # compared in UTC: comparing two datetimes in one zone ignores DST offsets
            day_end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
            if activity.end.astimezone(UTC) > day_end:
                return UNCHANGED
        return Fraction(params["factor"])


class WeekdayParams(LocalDayParams):
    weekdays = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0, max=6,
                                                            error="Weekdays are 0 (Monday) to 6 (Sunday).")),
        required=True, validate=validate.Length(min=1))


class WeekdayMultiplier(LocalDayMultiplier):
    name = "weekday_multiplier"
    label = "Multiplier on days of the week"
    params_schema = WeekdayParams

    def applies_on(self, day: date, params: dict) -> bool:
        return day.weekday() in params["weekdays"]


class DateParams(LocalDayParams):
    dates = fields.List(IsoDateField(), required=True, validate=validate.Length(min=1))  # "2024-09-02"


class DateMultiplier(LocalDayMultiplier):
    name = "date_multiplier"
    label = "Multiplier on dates"
    params_schema = DateParams

    def applies_on(self, day: date, params: dict) -> bool:
        return day.isoformat() in params["dates"]


SCORE_MULTIPLIERS = (WeekdayMultiplier, DateMultiplier)
