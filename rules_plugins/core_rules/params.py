"""Parameter building blocks shared by the core strategies.

A strategy receives its parameters already loaded by its `params_schema` (defaults filled in), so rules
read `params[...]` directly. Loaded parameters stay plain JSON values (fractions as canonical text such as
"3/2", dates as "YYYY-MM-DD") and loading them again gives the same result: the platform stores a ruleset's
loaded parameters and loads them again when it evaluates.
"""

from fractions import Fraction

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from kindstride.rules.contract import FLAG, REJECT, SPORTS

# Some rules let the organiser choose to let an activity through, besides rejecting or flagging it.
ACCEPT = "accept"
OUTCOMES = (REJECT, FLAG)
OUTCOMES_OR_ACCEPT = (ACCEPT, FLAG, REJECT)


class FractionField(fields.Field):
    """An exact rational number written as an integer or a string: 2, "2", "3/2", "1.5"; loaded as its
    canonical text ("3/2" for "1.5"), which rules turn into a Fraction.

    A JSON number such as 0.29 is read through its decimal text, so it means 29/100, not the nearest float.
    `within` is a validate.Range the number must fall in.
    """

    default_error_messages = {"invalid": 'Not a number: write an integer, a decimal or a fraction such as "3/2".'}

    def __init__(self, *, within: validate.Range | None = None, **kwargs):
        super().__init__(**kwargs)
        self.within = within

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.make_error("invalid")
        try:
            number = Fraction(str(value))
        except (ValueError, ZeroDivisionError):
            raise self.make_error("invalid") from None
        if self.within is not None:
            self.within(number)
        return str(number)


class IsoDateField(fields.Date):
    """A calendar date, loaded as its "YYYY-MM-DD" text."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).isoformat()


def sports_list(**kwargs):
    return fields.List(fields.String(validate=validate.OneOf(SPORTS)), validate=validate.Length(min=1), **kwargs)


def optional_int(minimum):
    # strict: 240.5 is refused rather than silently truncated to 240
    return fields.Integer(strict=True, load_default=None, validate=validate.Range(min=minimum))


def require_one_of(data, *names):
    if all(data.get(name) is None for name in names):
        raise ValidationError(f"Set at least one of {', '.join(names)}.")


def require_ordered(data, low, high):
    if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
        raise ValidationError(f"{high} must be greater than or equal to {low}.", field_name=high)


class NoParams(Schema):
    pass


class RuleParams(Schema):
    """What every core validation rule takes: what happens to an activity that breaks it."""

    outcome = fields.String(load_default=REJECT, validate=validate.OneOf(OUTCOMES))


class PaceWindow(Schema):
    """Pace limits in seconds per km (a smaller number is faster); either bound may be left out."""

    min_s_per_km = optional_int(1)  # the fastest pace allowed
    max_s_per_km = optional_int(1)  # the slowest pace allowed

    @validates_schema
    def _check_bounds(self, data, **kwargs):
        require_one_of(data, "min_s_per_km", "max_s_per_km")
        require_ordered(data, "min_s_per_km", "max_s_per_km")
