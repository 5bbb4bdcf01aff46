"""Admin pages of a tenant's site: the challenge builder, the ruleset editor (forms generated from each
strategy's parameter schema, a dry run, and saving a new version), and the moderators' review queue."""

import inspect
import json
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields, missing, validate

from kindstride.accounts.forms import FormErrors, form_value
from kindstride.accounts.models import User
from kindstride.accounts.session import role_required
from kindstride.activities import moderation
from kindstride.activities.dry_run import dry_run
from kindstride.activities.evaluation import REEVALUATION
from kindstride.activities.models import ACCEPTED, FLAGGED, REJECTED, ActivityResult
from kindstride.challenges import rulesets, services
from kindstride.challenges.models import SWITCH_FREE, Challenge, RulesetVersion
from kindstride.challenges.schemas import ChallengeSchema
from kindstride.challenges.views import (
    GENERAL,
    POLICY_LABELS,
    SOURCE_LABELS,
    SPORT_LABELS,
    errors_from,
    id_or_404,
    score_unit,
)
from kindstride.db import db
from kindstride.plugins import plugin_host
from kindstride.rules.contract import SPORTS
from kindstride.rules.labels import plugin_text
from kindstride.rules.messages import reason_message
from kindstride.web import progress as job_progress
from kindstride.web.sites import tenant_site_only

bp = Blueprint("challenge_admin", __name__, template_folder="templates", url_prefix="/admin/challenges")
bp.before_request(tenant_site_only)

WINDOWS = ("registration_opens_at", "registration_closes_at", "counting_start", "counting_end")
BUILDER_FIELDS = (*(name for name in ChallengeSchema._declared_fields if name != "qualifiers"), GENERAL)
SECTION_LABELS = {
    "validation": _l("Validation rules"), "scoring": _l("Scoring"), "multipliers": _l("Score multipliers"),
    "team_aggregation": _l("Team score"),
}
SECTION_HINTS = {
    "validation": _l("Tick the rules an activity must pass. A rule's outcome says whether a breach rejects the "
                     "activity or flags it for a moderator."),
    "scoring": _l("How an accepted activity is scored. Choose one."),
    "multipliers": _l("Factors applied to the score on some days. Tick any that apply."),
    "team_aggregation": _l("How a team's score is made from its members' scores. Choose one."),
}
KIND_LABELS = {
    "integer": _l("whole number"), "number": _l("number"), "boolean": _l("yes or no"), "choice": _l("one choice"),
    "choices": _l("any of the choices"), "text": _l("text"), "json": _l("JSON"),
}


# ---------------------------------------------------------------- the list of challenges

@bp.route("/")
@role_required("admin", "moderator")
def list_page():
    challenges = db.session.scalars(sa.select(Challenge).order_by(Challenge.counting_start.desc())).all()
    waiting = dict(db.session.execute(
        sa.select(ActivityResult.challenge_id, sa.func.count())
        .where(sa.or_(ActivityResult.status == FLAGGED, ActivityResult.appeal_state == moderation.OPEN))
        .group_by(ActivityResult.challenge_id)).all())
    return render_template("challenge_admin/list.html", challenges=challenges, waiting=waiting,
                           is_admin="admin" in g.roles)


def _challenge(slug):
    challenge = services.get_challenge(slug)
    if challenge is None:
        abort(404)
    return challenge


# ---------------------------------------------------------------- the challenge builder

def _zone(name):
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _builder_data(errors):
    """The builder form as create_challenge() data; datetime-local inputs are read in the chosen zone."""
    zone_name = form_value("timezone", 64) or g.tenant.timezone
    # With an unknown zone the service names it; the times are read in the site's zone meanwhile.
    zone = _zone(zone_name) or zoneinfo.ZoneInfo(g.tenant.timezone)
    data = {
        "slug": form_value("slug", 80), "title": form_value("title", 200),
        "description": (request.form.get("description") or "").strip()[:20000],
        "sports": request.form.getlist("sports"), "timezone": zone_name,
        "team_switch_policy": request.form.get("team_switch_policy") or SWITCH_FREE,
        "allow_individual": "allow_individual" in request.form, "allow_teams": "allow_teams" in request.form,
        "divisions": [line.strip() for line in (request.form.get("divisions") or "").splitlines() if line.strip()],
        "preset": request.form.get("preset") or None,
    }
    for name in WINDOWS:
        text = form_value(name, 40)
        if not text:
            continue  # the service says it is required, next to the field
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            errors.add(name, _("Enter a date and time."))
            continue
        data[name] = (moment if moment.tzinfo else moment.replace(tzinfo=zone)).isoformat()
    for name in ("goal_km", "team_size_cap"):
        data[name] = form_value(name, 20) or None
    return data


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def new_page():
    errors = FormErrors()
    presets = rulesets.presets(g.tenant)
    if request.method == "POST":
        data = _builder_data(errors)
        if not errors:
            try:
                challenge = services.create_challenge(data, created_by=g.user)
                db.session.commit()
            except services.ChallengeError as error:
                db.session.rollback()
                errors = errors_from(error, BUILDER_FIELDS)
            else:
                flash(_("The challenge %(title)s is created.", title=challenge.title), "success")
                return redirect(url_for("challenges.challenge_page", slug=challenge.slug))
        form = request.form
        values = {"sports": form.getlist("sports"), "allow_individual": "allow_individual" in form,
                  "allow_teams": "allow_teams" in form}
    else:
        form = {}
        values = {"sports": ["run"], "allow_individual": True, "allow_teams": True}
    return render_template(
        "challenge_admin/new.html", errors=errors, form=form, values=values, presets=presets,
        sports=[(sport, SPORT_LABELS.get(sport, sport)) for sport in SPORTS], policies=POLICY_LABELS,
        default_timezone=g.tenant.timezone,
    ), (400 if errors else 200)


# ---------------------------------------------------------------- the ruleset editor

@dataclass
class ParamField:
    """One parameter of a strategy as a form field, from its marshmallow field."""

    name: str
    key: str  # the form field's name
    kind: str  # integer, number, boolean, choice, choices, text, json
    required: bool
    default: object
    choices: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    value: object = None

    @property
    def kind_label(self):
        return KIND_LABELS[self.kind]

    @property
    def default_text(self):
        if isinstance(self.default, bool):
            return _("yes") if self.default else _("no")
        if self.default is None or self.default == []:
            return ""
        if isinstance(self.default, str | int | float):
            return str(self.default)
        return json.dumps(self.default, ensure_ascii=False)


def _one_of(schema_field):
    for validator in getattr(schema_field, "validators", ()):
        if isinstance(validator, validate.OneOf):
            return [str(choice) for choice in validator.choices]
    return []


def _range_attrs(schema_field):
    attrs = {}
    for validator in getattr(schema_field, "validators", ()):
        if isinstance(validator, validate.Range):
            if validator.min is not None and validator.min_inclusive:
                attrs["min"] = validator.min
            if validator.max is not None and validator.max_inclusive:
                attrs["max"] = validator.max
    return attrs


def _kind(schema_field):
    if isinstance(schema_field, fields.Boolean):
        return "boolean", []
    if isinstance(schema_field, fields.Integer):
        return "integer", []
    if isinstance(schema_field, fields.Number):
        return "number", []
    if isinstance(schema_field, fields.String):
        choices = _one_of(schema_field)
        return ("choice", choices) if choices else ("text", [])
    if isinstance(schema_field, fields.List):
        choices = _one_of(schema_field.inner)
        if choices and isinstance(schema_field.inner, fields.String):
            return "choices", choices
        return "json", []
    if isinstance(schema_field, fields.Dict | fields.Mapping | fields.Nested | fields.Tuple):
        return "json", []
    return "text", []  # a scalar of the plugin's own (a fraction, a date): typed as text


def _default(schema_field):
    default = schema_field.load_default
    if default is missing:
        return None
    return default() if callable(default) else default


def param_fields(strategy, section):
    specs = []
    for name, schema_field in strategy.params_schema().fields.items():
        if schema_field.dump_only:
            continue
        kind, choices = _kind(schema_field)
        attrs = _range_attrs(schema_field) if kind in ("integer", "number") else {}
        if kind == "integer":
            attrs["step"] = 1
        elif kind == "number":
            attrs["step"] = "any"
        specs.append(ParamField(name=name, key=f"p.{section}.{strategy.name}.{name}", kind=kind,
                                required=schema_field.required, default=_default(schema_field), choices=choices,
                                attrs=attrs))
    return specs


def _shown(spec, value):
    """A stored parameter value as the form shows it."""
    if spec.kind == "boolean":
        return bool(value)
    if spec.kind == "choices":
        return [str(v) for v in value or []]
    if value is None:
        return ""
    if spec.kind == "json":
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _posted(spec):
    if spec.kind == "boolean":
        return spec.key in request.form
    if spec.kind == "choices":
        return request.form.getlist(spec.key)
    return (request.form.get(spec.key) or "").strip()


def _by_rule(entries):
    """{rule: params} of a section's stored entries (the first entry of a rule when it appears twice)."""
    if entries is None:
        return {}
    found = {}
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, dict) and "rule" in entry:
            found.setdefault(entry["rule"], entry.get("params") or {})
    return found


def _description(strategy):
    doc = inspect.getdoc(strategy) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ")


def editor_state(ruleset, from_form):
    """The ruleset editor's sections: every available strategy with its generated fields and values,
    taken from the stored ruleset or from the submitted form."""
    sections = []
    for section, (hook, many) in rulesets.SECTIONS.items():
        available = plugin_host().strategies(hook, g.tenant)
        stored = _by_rule((ruleset or {}).get(section))
        strategies = []
        for name, strategy in available.items():
            specs = param_fields(strategy, section)
            if from_form:
                used = (f"use.{section}.{name}" in request.form if many
                        else request.form.get(f"pick.{section}") == name)
                for spec in specs:
                    spec.value = _posted(spec)
            else:
                used = name in stored
                for spec in specs:
                    spec.value = _shown(spec, stored.get(name, {}).get(spec.name, spec.default)
                                        if used else spec.default)
            strategies.append({"name": name, "label": plugin_text(getattr(strategy, "label", name)), "used": used,
                               "description": _description(strategy), "fields": specs})
        sections.append({"key": section, "many": many, "label": SECTION_LABELS[section],
                         "hint": SECTION_HINTS[section], "strategies": strategies,
                         "missing": sorted(set(stored) - set(available))})
    return sections


_SKIP = object()


def _param_value(spec, errors):
    value = spec.value
    if spec.kind == "boolean":
        return bool(value)
    if spec.kind == "choices":
        return value if value or spec.required else _SKIP
    if value == "":
        return _SKIP  # the schema's default, or its "required" message
    if spec.kind in ("integer", "number"):
        try:
            number = float(value.replace(",", "."))
        except ValueError:
            return value  # the schema says it is not a number
        return int(number) if spec.kind == "integer" and number.is_integer() else number
    if spec.kind == "json":
        try:
            return json.loads(value)
        except ValueError as error:
            errors.add(spec.key, _("This is not valid JSON: %(error)s", error=str(error)))
            return _SKIP
    return value


def ruleset_from_state(sections, errors):
    """The ruleset the form describes, and which strategy each (section, position) is, to place errors."""
    ruleset, positions = {}, {}
    for section in sections:
        entries = []
        for strategy in section["strategies"]:
            if not strategy["used"]:
                continue
            params = {}
            for spec in strategy["fields"]:
                value = _param_value(spec, errors)
                if value is not _SKIP:
                    params[spec.name] = value
            positions[(section["key"], len(entries))] = strategy["name"]
            entries.append({"rule": strategy["name"], "params": params})
        ruleset[section["key"]] = entries if section["many"] else (entries[0] if entries else None)
    return ruleset, positions


ERROR_PATH = re.compile(r"^ruleset\.(?P<section>\w+)(?:\[(?P<index>\d+)\])?(?:\.(?P<rest>.+))?$")


def form_errors(error, positions):
    """'ruleset.validation[2].params.min_m: message' lines placed next to the generated field."""
    errors = FormErrors()
    for line in error.errors:
        path, _sep, message = line.partition(": ")
        match = ERROR_PATH.match(path)
        rule = match and positions.get((match["section"], int(match["index"] or 0)))
        if not match:
            errors.add(GENERAL, line)
            continue
        rest = match["rest"] or ""
        if rule is None:
            errors.add(f"section.{match['section']}", f"{rest}: {message}" if rest else message)
        elif rest.startswith("params."):
            param, _dot, inner = rest[len("params."):].partition(".")
            if param == "_schema":
                errors.add(f"rule.{match['section']}.{rule}", message)
            else:
                errors.add(f"p.{match['section']}.{rule}.{param}", f"{inner}: {message}" if inner else message)
        else:
            errors.add(f"rule.{match['section']}.{rule}", f"{rest}: {message}" if rest else message)
    return errors


def reference(sections):
    """Every strategy's parameters (name, type, required, default, allowed values), for the JSON editor."""
    return [{"key": s["key"], "label": s["label"], "strategies": s["strategies"]} for s in sections]


def _versions(challenge):
    return db.session.execute(
        sa.select(RulesetVersion, User.name).outerjoin(User, User.id == RulesetVersion.created_by_id)
        .where(RulesetVersion.challenge_id == challenge.id).order_by(RulesetVersion.version.desc())).all()


@bp.route("/<slug>/ruleset", methods=["GET", "POST"])
@role_required("admin")
def ruleset_page(slug):
    challenge = _challenge(slug)
    stored = services.current_ruleset(challenge)
    errors = FormErrors()
    result = None
    mode = request.form.get("mode") if request.method == "POST" else None
    sections = editor_state(stored, from_form=mode == "form")
    json_text = json.dumps(stored, ensure_ascii=False, indent=2)
    if request.method == "POST":
        action = request.form.get("action")
        if mode not in ("form", "json") or action not in ("dry_run", "save"):
            abort(400)
        if mode == "json":
            json_text = request.form.get("ruleset_json") or ""
            try:
                ruleset = json.loads(json_text)
            except ValueError as error:
                errors.add("ruleset_json", _("This is not valid JSON: %(error)s", error=str(error)))
            positions = None
        else:
            ruleset, positions = ruleset_from_state(sections, errors)
        note = form_value("note", 500)
        if not errors:
            try:
                if action == "dry_run":
                    result = dry_run(challenge, ruleset)
                else:
                    services.change_ruleset(challenge, ruleset, note, g.user)
                    version = challenge.ruleset_version
                    # Before the commit: the commit queues the job, which may even run (and finish) right in it.
                    job_progress.queued(REEVALUATION, challenge.id, version)
                    db.session.commit()
                    flash(_("Version %(version)s is saved. Every activity of the challenge is being judged again "
                            "with it; the leaderboards update when that is done.", version=version), "success")
                    return redirect(url_for("challenge_admin.ruleset_page", slug=challenge.slug))
            except services.ChallengeError as error:
                db.session.rollback()
                if positions is None:
                    for line in error.errors:
                        errors.add("ruleset_json", line.removeprefix("ruleset."))
                else:
                    errors = form_errors(error, positions)
    return render_template(
        "challenge_admin/ruleset.html", challenge=challenge, sections=sections, errors=errors, result=result,
        json_text=json_text, mode=mode, versions=_versions(challenge), reference=reference(sections),
        note=request.form.get("note", ""), job=reevaluation_status(challenge),
    ), (400 if errors else 200)


def reevaluation_status(challenge):
    """How far judging every activity again under the current version has got, or None when no such job is
    known (none since the last day, or the record is of an older version)."""
    record = job_progress.read(REEVALUATION, challenge.id)
    if record is None or record.get("run") != challenge.ruleset_version:
        return None
    numbers = {"version": challenge.ruleset_version, "done": format_decimal(int(record.get("done") or 0)),
               "total": format_decimal(int(record.get("total") or 0))}
    return job_progress.status(record, {
        job_progress.QUEUED: _("Version %(version)s: waiting to judge every activity again.", **numbers),
        job_progress.RUNNING: _("Version %(version)s: judging every activity again, %(done)s of %(total)s "
                                "participants done.", **numbers),
        job_progress.DONE: _("Version %(version)s: every activity is judged again (%(total)s participants). "
                             "The leaderboards are up to date.", **numbers),
        job_progress.FAILED: _("Version %(version)s: judging again stopped after %(done)s of %(total)s "
                               "participants. It is tried again in a few minutes.", **numbers),
    })


@bp.route("/<slug>/ruleset/progress")
@role_required("admin")
def reevaluation_progress(slug):
    """The re-evaluation's progress as JSON, for kindstride-progress.js to update the page's bar."""
    challenge = _challenge(slug)
    return job_progress.status_response(reevaluation_status(challenge) or job_progress.status(None, {}))


# ---------------------------------------------------------------- the review queue

def _queue(challenge):
    unit = score_unit(challenge)
    return [{"result": result, "activity": activity, "registration": registration,
             "reasons": [reason_message(reason) for reason in result.reasons], "unit": unit}
            for result, activity, registration in moderation.review_queue(challenge)]


@bp.route("/<slug>/review")
@role_required("admin", "moderator")
def review_page(slug):
    challenge = _challenge(slug)
    return render_template("challenge_admin/review.html", challenge=challenge, items=_queue(challenge),
                           errors=FormErrors(), error_result_id=None, sources=SOURCE_LABELS)


@bp.route("/<slug>/review/<int:result_id>", methods=["POST"])
@role_required("admin", "moderator")
def decide(slug, result_id):
    challenge = _challenge(slug)
    id_or_404(result_id)
    result = db.session.scalar(sa.select(ActivityResult).where(ActivityResult.id == result_id,
                                                               ActivityResult.challenge_id == challenge.id))
    if result is None:
        abort(404)
    decision = request.form.get("decision")
    try:
        moderation.decide(result, decision, form_value("comment", 2000), g.user)
        db.session.commit()
    except moderation.ModerationError as error:
        db.session.rollback()
        errors = errors_from(error, ("comment", GENERAL), rename={"decision": GENERAL, "result": GENERAL})
        return render_template("challenge_admin/review.html", challenge=challenge, items=_queue(challenge),
                               errors=errors, error_result_id=result_id, sources=SOURCE_LABELS), 400
    if decision == ACCEPTED:
        flash(_("Activity accepted: it counts now."), "success")
    elif decision == REJECTED:
        flash(_("Activity rejected."), "success")
    return redirect(url_for("challenge_admin.review_page", slug=challenge.slug))
