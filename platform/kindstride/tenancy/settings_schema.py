"""The schema of tenant.toml: what a tenant folder may configure, checked with clear field errors."""

import zoneinfo

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_name
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from kindstride.tenancy.resolution import SLUG_PATTERN

ROLES = ("admin", "moderator", "participant", "sponsor")
HEX_COLOUR = validate.Regexp(r"^#[0-9a-fA-F]{6}$", error="must be a colour like #1a2b3c")


class BrandingSchema(Schema):
    class Meta:
        unknown = RAISE

    primary_color = fields.String(load_default="#1f5fbf", validate=HEX_COLOUR)
    accent_color = fields.String(load_default="#f28c28", validate=HEX_COLOUR)
    logo = fields.String(load_default=None)
    stylesheet = fields.String(load_default=None)
    tagline = fields.String(load_default="")
    about = fields.String(load_default="")


class SSOSchema(Schema):
    class Meta:
        unknown = RAISE

    issuer = fields.Url(required=True, require_tld=False)
    client_id = fields.String(required=True)
    client_secret_env = fields.String(required=True, validate=validate.Regexp(r"^[A-Z][A-Z0-9_]*$"))
    allowed_email_domains = fields.List(fields.String(), load_default=list)
    role_claim = fields.String(load_default="groups")
    role_map = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(ROLES)),
                           load_default=dict)
    label = fields.String(load_default=None)


class TenantSettingsSchema(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(required=True, validate=validate.Regexp(SLUG_PATTERN, error="lowercase letters, "
                                                                 "digits and inner hyphens only"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    locale = fields.String(load_default="en", validate=validate.OneOf(["en", "vi"]))
    currency = fields.String(load_default="USD")
    timezone = fields.String(load_default="UTC")
    domains = fields.List(fields.String(validate=validate.Length(min=3, max=253)), load_default=list)
    plugins = fields.List(fields.String(), load_default=list)
    contact_email = fields.Email(load_default=None)
    branding = fields.Nested(BrandingSchema, load_default=lambda: BrandingSchema().load({}))
    sso = fields.Nested(SSOSchema, load_default=None)
    # [gateways.<name>]: public settings as values; secrets as `<field>_env = "ENV_VARIABLE"`.
    gateways = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)

    @validates("currency")
    def _known_currency(self, value, **kwargs):
        if len(value) != 3 or get_currency_name(value, locale="en") == value:
            raise ValidationError(f"unknown ISO 4217 currency {value!r}")

    @validates("timezone")
    def _known_timezone(self, value, **kwargs):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"unknown IANA time zone {value!r}") from None

    @validates("locale")
    def _babel_knows_locale(self, value, **kwargs):
        try:
            Locale.parse(value)
        except (UnknownLocaleError, ValueError):
            raise ValidationError(f"unknown locale {value!r}") from None


def flatten_errors(messages, prefix=""):
    """marshmallow's nested error dict as 'field.sub: message' lines."""
    lines = []
    for key, value in messages.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines.extend(flatten_errors(value, prefix=f"{name}."))
        else:
            lines.extend(f"{name}: {message}" for message in value)
    return lines
