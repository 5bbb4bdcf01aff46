"""What an admin may send to create or change a challenge (web form and REST API alike)."""

import zoneinfo

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from kindstride.challenges.models import SWITCH_FREE, SWITCH_LOCKED, SWITCH_RESET
from kindstride.rules.contract import SPORTS

SLUG = validate.Regexp(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$", error="lowercase letters, digits and hyphens")


class QualifierSchema(Schema):
    challenge = fields.String(required=True, metadata={"description": "slug of the qualifying challenge"})
    top_per_gender = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))
    min_distance_m = fields.Integer(load_default=0, validate=validate.Range(min=0))


class ChallengeSchema(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(required=True, validate=SLUG)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=20000))
    sports = fields.List(fields.String(validate=validate.OneOf(SPORTS)), required=True,
                         validate=validate.Length(min=1))
    timezone = fields.String(load_default=None)
    registration_opens_at = fields.AwareDateTime(required=True, default_timezone=None)
    registration_closes_at = fields.AwareDateTime(required=True)
    counting_start = fields.AwareDateTime(required=True)
    counting_end = fields.AwareDateTime(required=True)
    goal_km = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=10**9))
    team_size_cap = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=100000))
    team_switch_policy = fields.String(load_default=SWITCH_FREE,
                                       validate=validate.OneOf([SWITCH_FREE, SWITCH_LOCKED, SWITCH_RESET]))
    allow_individual = fields.Boolean(load_default=True)
    allow_teams = fields.Boolean(load_default=True)
    entry_fee = fields.Integer(load_default=None, allow_none=True, strict=True,
                               validate=validate.Range(min=1, max=10**12),
                               metadata={"description": "in minor units of the tenant's currency"})
    divisions = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=list)
    qualifiers = fields.List(fields.Nested(QualifierSchema), load_default=list)
    preset = fields.String(load_default=None, allow_none=True)
    ruleset = fields.Dict(load_default=None, allow_none=True)

    @validates("timezone")
    def _known_zone(self, value, **kwargs):
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValidationError(f"unknown IANA time zone {value!r}") from None

    @validates_schema
    def _windows(self, data, **kwargs):
        errors = {}
        if data["registration_closes_at"] <= data["registration_opens_at"]:
            errors["registration_closes_at"] = ["must be after registration_opens_at"]
        if data["counting_end"] <= data["counting_start"]:
            errors["counting_end"] = ["must be after counting_start"]
        if not (data["allow_individual"] or data["allow_teams"]):
            errors["allow_teams"] = ["at least one of allow_individual and allow_teams must be true"]
        if len(set(data["divisions"])) != len(data["divisions"]):
            errors["divisions"] = ["names must be different"]
        if errors:
            raise ValidationError(errors)


class RegistrationSchema(Schema):
    class Meta:
        unknown = RAISE

    team_id = fields.Integer(load_default=None, allow_none=True)
    new_team = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=120))
    division_id = fields.Integer(load_default=None, allow_none=True)
    join_code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=16))
    gender = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["female", "male", "other"]))
    beneficiary_id = fields.Integer(load_default=None, allow_none=True,
                                    metadata={"description": "the partner charity your kilometres raise money for"})
    gateway = fields.String(load_default=None, allow_none=True, metadata={"description": "to pay an entry fee"})
    idempotency_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8, max=64))
    birth_year = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1900, max=2100))
