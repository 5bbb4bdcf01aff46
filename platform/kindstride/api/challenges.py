"""API: challenges, their rulesets and presets, registrations and teams."""

import sqlalchemy as sa
from flask import g, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields

from kindstride.api.auth import BEARER, token_required
from kindstride.api.common import challenge_or_404, refuse
from kindstride.challenges import rulesets, services
from kindstride.challenges.models import Team
from kindstride.db import db
from kindstride.payments.contract import GatewayError
from kindstride.web.sites import tenant_site_only

blp = Blueprint("api_challenges", __name__, url_prefix="/api/v1", description="Challenges, rulesets, teams")
blp.before_request(tenant_site_only)


class DivisionSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class ChallengeOutSchema(Schema):
    slug = fields.String()
    title = fields.String()
    description = fields.String()
    status = fields.String()
    sports = fields.List(fields.String())
    timezone = fields.String()
    registration_opens_at = fields.DateTime()
    registration_closes_at = fields.DateTime()
    counting_start = fields.DateTime()
    counting_end = fields.DateTime()
    goal_m = fields.Integer(allow_none=True)
    team_size_cap = fields.Integer(allow_none=True)
    team_switch_policy = fields.String()
    entry_fee_minor = fields.Integer(allow_none=True)
    allow_individual = fields.Boolean()
    allow_teams = fields.Boolean()
    ruleset_version = fields.Integer()
    scoring_frozen_reason = fields.String(allow_none=True)
    qualifiers = fields.List(fields.Dict())


class RulesetOutSchema(Schema):
    version = fields.Integer()
    ruleset = fields.Dict()


class RulesetChangeSchema(Schema):
    ruleset = fields.Dict(required=True)
    note = fields.String(load_default="")


class PresetSchema(Schema):
    name = fields.String()
    label = fields.String()
    description = fields.String()
    ruleset = fields.Dict()


class RegistrationOutSchema(Schema):
    id = fields.Integer()
    bib = fields.Integer()
    status = fields.String()
    payment_reference = fields.String(allow_none=True)
    payment_redirect_url = fields.String(allow_none=True)
    payment_client_secret = fields.String(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    display_name = fields.String()
    gender = fields.String(allow_none=True)
    birth_year = fields.Integer(allow_none=True)
    beneficiary_id = fields.Integer(allow_none=True)


class TeamOutSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    division_id = fields.Integer(allow_none=True)


class TeamInSchema(Schema):
    name = fields.String(required=True)
    division_id = fields.Integer(load_default=None, allow_none=True)


def _admin():
    if "admin" not in g.roles:
        abort(403, message="Authorization: this needs the admin role")


@blp.route("/challenges")
class Challenges(MethodView):
    @blp.response(200, ChallengeOutSchema(many=True))
    def get(self):
        """This site's challenges, newest first."""
        from kindstride.challenges.models import Challenge

        return db.session.scalars(sa.select(Challenge).order_by(Challenge.counting_start.desc())).all()

    @blp.doc(**BEARER)
    @token_required("admin")
    @blp.arguments(Schema.from_dict({}, name="ChallengeIn")(unknown="include"), location="json")
    @blp.response(201, ChallengeOutSchema)
    def post(self, data):
        """Create a challenge from a preset or a ruleset (fields as in ChallengeSchema)."""
        _admin()
        try:
            challenge = services.create_challenge(data, created_by=g.user)
        except services.ChallengeError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return challenge


@blp.route("/challenges/<slug>")
class ChallengeResource(MethodView):
    @blp.response(200, ChallengeOutSchema)
    def get(self, slug):
        """One challenge."""
        return challenge_or_404(slug)


@blp.route("/presets")
class Presets(MethodView):
    @blp.response(200, PresetSchema(many=True))
    def get(self):
        """Ready-made rulesets from this site's plugins."""
        return list(rulesets.presets(services.current_tenant()).values())


@blp.route("/challenges/<slug>/ruleset")
class Ruleset(MethodView):
    @blp.response(200, RulesetOutSchema)
    def get(self, slug):
        """The current ruleset version."""
        challenge = challenge_or_404(slug)
        return {"version": challenge.ruleset_version, "ruleset": services.current_ruleset(challenge)}

    @blp.doc(**BEARER)
    @token_required("admin")
    @blp.arguments(RulesetChangeSchema)
    @blp.response(200, RulesetOutSchema)
    def put(self, data, slug):
        """Save a new ruleset version; every activity is judged again in a job."""
        _admin()
        challenge = challenge_or_404(slug)
        try:
            services.change_ruleset(challenge, data["ruleset"], data["note"], g.user)
        except services.ChallengeError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return {"version": challenge.ruleset_version, "ruleset": services.current_ruleset(challenge)}


@blp.route("/challenges/<slug>/ruleset/dry-run")
class RulesetDryRun(MethodView):
    @blp.doc(**BEARER)
    @blp.arguments(RulesetChangeSchema)
    @blp.response(200, Schema.from_dict({
        "activities_changed": fields.Integer(), "participants_changed": fields.Integer(),
        "examples": fields.List(fields.Dict()),
    }, name="DryRun"))
    @token_required("admin")
    def post(self, data, slug):
        """What a ruleset change would change, without changing anything."""
        from kindstride.activities.dry_run import dry_run

        _admin()
        challenge = challenge_or_404(slug)
        try:
            return dry_run(challenge, data["ruleset"])
        except services.ChallengeError as error:
            refuse(error)


@blp.route("/challenges/<slug>/registrations")
class Registrations(MethodView):
    @blp.doc(**BEARER)
    @token_required("activities:write")
    @blp.arguments(Schema.from_dict({}, name="RegistrationIn")(unknown="include"), location="json")
    @blp.response(201, RegistrationOutSchema)
    def post(self, data, slug):
        """Register the caller: alone, creating a team (new_team, division_id), joining one (team_id or
        join_code); optional gender and birth_year for category leaderboards."""
        challenge = challenge_or_404(slug)
        payment = created = None
        try:
            registration = services.register(challenge, g.user, data)
            if challenge.entry_fee_minor:
                gateway = str(data.get("gateway") or "none")
                payment, created = services.start_entry_fee(
                    challenge, registration, g.user, data,
                    return_url=url_for("payments.payer_return", gateway_name=gateway, _external=True),
                    notify_url=url_for("payments.webhook", gateway_name=gateway, _external=True))
        except services.ChallengeError as error:
            db.session.rollback()
            refuse(error)
        except GatewayError as error:
            db.session.rollback()
            abort(502, message=f"gateway: {error}")
        db.session.commit()
        out = {name: getattr(registration, name) for name in RegistrationOutSchema._declared_fields
               if hasattr(registration, name)}
        if payment is not None:
            out.update(payment_reference=payment.reference,
                       payment_redirect_url=created.redirect_url if created else None,
                       payment_client_secret=created.client_secret if created else None)
        return out


@blp.route("/challenges/<slug>/registration")
class MyRegistration(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, RegistrationOutSchema)
    @token_required("read")
    def get(self, slug):
        """The caller's registration."""
        registration = services.registration_of(challenge_or_404(slug), g.user)
        if registration is None:
            abort(404, message="registration: you are not registered")
        return registration

    @blp.doc(**BEARER)
    @token_required("activities:write")
    @blp.arguments(Schema.from_dict({}, name="TeamSwitchIn")(unknown="include"), location="json")
    @blp.response(200, RegistrationOutSchema)
    def patch(self, data, slug):
        """Switch team (team_id, join_code or new_team; none of them leaves the team), as the policy allows."""
        challenge = challenge_or_404(slug)
        registration = services.registration_of(challenge, g.user)
        if registration is None:
            abort(404, message="registration: you are not registered")
        try:
            services.switch_team(challenge, registration, g.user, data)
        except services.ChallengeError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return registration


@blp.route("/challenges/<slug>/teams")
class Teams(MethodView):
    @blp.response(200, TeamOutSchema(many=True))
    def get(self, slug):
        """The challenge's teams."""
        challenge = challenge_or_404(slug)
        return db.session.scalars(sa.select(Team).where(Team.challenge_id == challenge.id).order_by(Team.name)).all()


@blp.route("/challenges/<slug>/divisions")
class Divisions(MethodView):
    @blp.response(200, DivisionSchema(many=True))
    def get(self, slug):
        """The challenge's team divisions."""
        return services.divisions_of(challenge_or_404(slug))
