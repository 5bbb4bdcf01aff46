"""Challenge pages of a tenant's site: the public challenge page and leaderboards, registering and teams,
and a participant's own activities (uploads, manual entries, verdicts, appeals).

Server-rendered and usable without JavaScript; every string in the tenant's language, numbers and dates
in its locale. Domain rules stay in the services: these views read forms, call a service, and show its
'field: message' errors next to the field they name.
"""

import re
import secrets
import zoneinfo
from datetime import datetime, time

import sqlalchemy as sa
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.dates import format_skeleton as babel_format_skeleton
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from kindstride.accounts.forms import FormErrors, form_value
from kindstride.accounts.session import login_required
from kindstride.activities import moderation
from kindstride.activities.models import ACCEPTED, DUPLICATE, FLAGGED, REJECTED, Activity, ActivityResult
from kindstride.activities.services import ActivityError, add_entered
from kindstride.challenges import services
from kindstride.challenges.models import (
    DRAFT,
    GENDERS,
    SWITCH_FREE,
    SWITCH_LOCKED,
    SWITCH_RESET,
    Challenge,
    Division,
    Registration,
    Team,
)
from kindstride.db import db, utcnow
from kindstride.fundraising.receipts import money
from kindstride.fundraising.services import beneficiaries_of
from kindstride.leaderboards import daily
from kindstride.leaderboards import services as boards
from kindstride.leaderboards.models import TeamTotal
from kindstride.payments.services import gateways_of
from kindstride.plugins import plugin_host
from kindstride.rules.contract import SPORTS
from kindstride.rules.labels import plugin_text
from kindstride.rules.messages import reason_message
from kindstride.web import progress as job_progress
from kindstride.web.sites import tenant_site_only

bp = Blueprint("challenges", __name__, template_folder="templates")
bp.before_request(tenant_site_only)

TOP_INDIVIDUALS = 10
TOP_TEAMS = 5
ACTIVITIES_PAGE = 30
TEAM_CHOICES_LIMIT = 500
UPLOAD_ACCEPT = ".fit,.gpx,.tcx,.zip,.gz"
GENERAL = "_form"  # errors that name no field on the page
MAX_ID = 2**63 - 1  # ids are BIGINT: a larger number is no row, not a database error
MAX_PAGE = 100_000
MAX_BIB = 2**31 - 1

SPORT_LABELS = {
    "run": _l("Run"), "walk": _l("Walk"), "ride": _l("Ride"), "hike": _l("Hike"), "swim": _l("Swim"),
    "wheelchair": _l("Wheelchair"), "other": _l("Other"),
}
GENDER_LABELS = {"female": _l("Female"), "male": _l("Male"), "other": _l("Other")}
STATUS_LABELS = {
    ACCEPTED: _l("Counted"), REJECTED: _l("Not counted"), FLAGGED: _l("Under review"),
    DUPLICATE: _l("Counted once elsewhere"),
}
APPEAL_LABELS = {
    moderation.OPEN: _l("Your appeal is waiting for a moderator."),
    moderation.UPHELD: _l("Your appeal was upheld."),
    moderation.DENIED: _l("Your appeal was denied."),
}
SOURCE_LABELS = {
    "device": _l("Device file"), "strava": _l("Strava"), "app": _l("App"), "api": _l("Connected service"),
    "manual": _l("Entered by hand"),
}
POLICY_LABELS = {
    SWITCH_FREE: _l("Free: change team at any time, your kilometres move with you"),
    SWITCH_LOCKED: _l("Locked: no team changes once the challenge has started"),
    SWITCH_RESET: _l("Reset: a team change after the start resets your kilometres"),
}


# ---------------------------------------------------------------- formatting (also used by the admin pages)

def km(distance_m):
    """Kilometres in the tenant's locale, with one or two decimals."""
    return format_decimal((distance_m or 0) / 1000, format="#,##0.0#")


def duration(seconds):
    seconds = int(round(seconds or 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def pace(moving_s, distance_m):
    if not distance_m:
        return ""
    per_km = int(round(moving_s / (distance_m / 1000)))
    return f"{per_km // 60}:{per_km % 60:02d}"


def local_datetime(moment, zone=None, style="medium"):
    """A moment in the given IANA zone (the tenant's by default), in the tenant's locale."""
    if moment is None:
        return ""
    tz = zoneinfo.ZoneInfo(zone or g.tenant.timezone)
    return babel_format_datetime(moment, style, tzinfo=tz, locale=get_locale())


def local_date(moment, zone=None, style="medium"):
    if moment is None:
        return ""
    tz = zoneinfo.ZoneInfo(zone or g.tenant.timezone)
    return babel_format_date(moment.astimezone(tz).date(), style, locale=get_locale())


def score_unit(challenge):
    """The unit of the challenge's scoring rule ("m", "s", "pt"), or None when it is not installed."""
    cache = g.setdefault("ks_score_units", {})
    if challenge.id not in cache:
        ruleset = services.current_ruleset(challenge) or {}
        rule = (ruleset.get("scoring") or {}).get("rule")
        strategy = plugin_host().strategies("register_scoring_rules", g.tenant).get(rule)
        cache[challenge.id] = getattr(strategy, "unit", None)
    return cache[challenge.id]


def score_text(value, unit):
    if unit == "m":
        return km(value)
    if unit == "s":
        return duration(value)
    if unit == "pt":
        return format_decimal((value or 0) / 1000, format="#,##0.###")
    return format_decimal(value or 0)


def score_heading(unit):
    return {"m": _("Score (km)"), "s": _("Score (time)"), "pt": _("Score (points)")}.get(unit, _("Score"))


@bp.record_once
def _formatting(state):
    """Formatting helpers as template globals, so imported macros can use them too."""
    state.app.jinja_env.globals.update(
        ks_km=km, ks_duration=duration, ks_pace=pace, ks_datetime=local_datetime, ks_date=local_date,
        ks_score=score_text, ks_score_heading=score_heading, ks_sport=lambda sport: SPORT_LABELS.get(sport, sport),
        ks_page_url=page_url, ks_plugin_text=plugin_text)


def page_url(page):
    """This page's address with the same query, on another page number."""
    return url_for(request.endpoint, **{**(request.view_args or {}), **request.args.to_dict(), "page": page})


# ---------------------------------------------------------------- helpers

def errors_from(error, fields, rename=None):
    """A service error's 'field: message' lines as FormErrors; unknown fields go to the top of the form."""
    errors = FormErrors()
    for line in getattr(error, "errors", None) or [str(error)]:
        field, _sep, message = line.partition(": ")
        if not message:
            field, message = GENERAL, line
        field = (rename or {}).get(field, field)
        if field not in fields:
            field = re.split(r"[.\[]", field, maxsplit=1)[0]  # "sports.0" is about the sports field
        if field in fields:
            errors.add(field, message)
        else:
            errors.add(GENERAL, line)
    return errors


def challenge_or_404(slug):
    challenge = services.get_challenge(slug)
    if challenge is None:
        abort(404)
    if challenge.status == DRAFT and "admin" not in g.roles:
        abort(404)
    return challenge


def my_registration(challenge):
    return services.registration_of(challenge, g.user) if g.user is not None else None


def registration_open(challenge, now=None):
    now = now or utcnow()
    return challenge.registration_opens_at <= now < challenge.registration_closes_at


def progress(challenge, totals):
    if not challenge.goal_m:
        return None
    return {"value": min(totals.distance_m, challenge.goal_m), "max": challenge.goal_m,
            "percent": format_decimal(min(totals.distance_m / challenge.goal_m * 100, 100), format="#,##0.#")}


def km_chart(days, values_m, kind, series):
    """A chart's data for kindstride-charts.js and for the table beside it: one point per day, with the day
    and the kilometres already formatted in the tenant's locale (the script only draws)."""
    locale = get_locale()
    return {
        "kind": kind, "series": str(series), "day": _("Day"),
        "labels": [babel_format_skeleton("MMMd", day, locale=locale) for day in days],
        "dates": [babel_format_date(day, "medium", locale=locale) for day in days],
        "values": [round(value / 1000, 3) for value in values_m],
        "texts": [km(value) for value in values_m],
    }


def challenge_daily_chart(challenge):
    days = daily.challenge_daily(challenge)
    if not days:
        return None
    return km_chart([d.day for d in days], [d.distance_m for d in days], "bars", _("Kilometres per day"))


def my_progress_chart(challenge, registration):
    """A participant's kilometres added up over the days of the challenge."""
    days = daily.participant_daily(challenge, registration)
    if not days:
        return None
    chart = km_chart([d.day for d in days], daily.cumulative(days), "cumulative", _("Your kilometres so far"))
    chart["daily_texts"] = [km(d.distance_m) for d in days]
    return chart


def challenge_summaries(limit=20):
    """The tenant's challenges for the home page, newest first, with their totals toward the goal."""
    challenges = db.session.scalars(sa.select(Challenge).where(Challenge.status != DRAFT)
                                    .order_by(Challenge.counting_start.desc()).limit(limit)).all()
    summaries = []
    for challenge in challenges:
        totals = boards.challenge_totals(challenge)
        summaries.append({"challenge": challenge, "totals": totals, "progress": progress(challenge, totals)})
    return summaries


def _int_or_none(value):
    """A submitted id as an int, or None when it is not one (or could not be a database id)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def page_number():
    return min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)


def id_or_404(number):
    if not 0 < number <= MAX_ID:
        abort(404)
    return number


def _division_options(challenge):
    return [(division.id, division.name) for division in services.divisions_of(challenge)]


def _teams_to_join(challenge, exclude_team_id=None):
    """The challenge's teams with their member count and division name, for a select."""
    members = (sa.select(Registration.team_id, sa.func.count().label("members"))
               .where(Registration.challenge_id == challenge.id, Registration.team_id.is_not(None))
               .group_by(Registration.team_id).subquery())
    rows = db.session.execute(
        sa.select(Team, sa.func.coalesce(members.c.members, 0), Division.name)
        .outerjoin(members, members.c.team_id == Team.id)
        .outerjoin(Division, Division.id == Team.division_id)
        .where(Team.challenge_id == challenge.id)
        .order_by(Team.name).limit(TEAM_CHOICES_LIMIT)
    ).all()
    cap = challenge.team_size_cap
    return [{"id": team.id, "name": team.name, "members": count, "division": division,
             "full": bool(cap and count >= cap)}
            for team, count, division in rows if team.id != exclude_team_id]


def _team_choice(mode, challenge, errors):
    """The registration/switch data for the chosen way of joining, or None with errors added."""
    if mode == "create":
        name = form_value("new_team", 120)
        if not name:
            errors.add("new_team", _("Give your team a name."))
            return None
        return {"new_team": name, "division_id": _int_or_none(request.form.get("division_id"))}
    if mode == "join":
        team_id = _int_or_none(request.form.get("team_id"))
        if team_id is None:
            errors.add("team_id", _("Choose a team."))
            return None
        return {"team_id": team_id}
    if mode == "code":
        code = form_value("join_code", 16)
        if not code:
            errors.add("join_code", _("Enter the code your team gave you."))
            return None
        return {"join_code": code}
    return {}


TEAM_FIELDS = ("mode", "new_team", "division_id", "team_id", "join_code", "gender", "birth_year", GENERAL)


# ---------------------------------------------------------------- public pages

@bp.route("/challenges/<slug>")
def challenge_page(slug):
    challenge = challenge_or_404(slug)
    totals = boards.challenge_totals(challenge)
    divisions = services.divisions_of(challenge)
    team_boards = []
    if challenge.allow_teams:
        if divisions:
            team_boards = [(division, boards.team_board(challenge, division.id)[:TOP_TEAMS]) for division in divisions]
        else:
            team_boards = [(None, boards.team_board(challenge)[:TOP_TEAMS * 2])]
    registration = my_registration(challenge)
    mine = None
    if registration is not None:
        total = boards.participant_total(registration)
        team = db.session.get(Team, registration.team_id) if registration.team_id else None
        mine = {"registration": registration, "rank": boards.rank_of(challenge, registration), "total": total,
                "team": team, "chart": my_progress_chart(challenge, registration)}
    return render_template(
        "challenges/challenge.html", challenge=challenge, totals=totals, progress=progress(challenge, totals),
        daily_chart=challenge_daily_chart(challenge),
        top=boards.individual_board(challenge, 1)[:TOP_INDIVIDUALS], team_boards=team_boards, mine=mine,
        unit=score_unit(challenge), can_register=registration is None and registration_open(challenge),
        started=utcnow() >= challenge.counting_start, policy_label=POLICY_LABELS.get(challenge.team_switch_policy),
        sports=[SPORT_LABELS.get(s, s) for s in challenge.sports],
    )


@bp.route("/challenges/<slug>/leaderboard")
def leaderboard_page(slug):
    challenge = challenge_or_404(slug)
    page = page_number()
    gender = request.args.get("gender") if request.args.get("gender") in GENDERS else None
    age_group = request.args.get("age_group") if request.args.get("age_group") in boards.AGE_GROUPS else None
    query = (request.args.get("q") or "").strip()[:100]
    if query.isdigit() and int(query) > MAX_BIB:
        rows = []  # no such bib; the number would not even fit the column
    else:
        rows = boards.individual_board(challenge, page, gender, age_group, query or None)
    registration = my_registration(challenge)
    return render_template(
        "challenges/leaderboard.html", challenge=challenge, rows=rows, page=page, gender=gender,
        age_group=age_group, query=query, has_next=len(rows) == boards.PAGE_SIZE, genders=GENDER_LABELS,
        age_groups=list(boards.AGE_GROUPS), unit=score_unit(challenge),
        my_registration_id=registration.id if registration else None,
    )


@bp.route("/challenges/<slug>/teams")
def teams_page(slug):
    challenge = challenge_or_404(slug)
    if not challenge.allow_teams:
        abort(404)
    divisions = services.divisions_of(challenge)
    division_id = request.args.get("division_id", type=int)
    if division_id not in {d.id for d in divisions}:
        division_id = None
    page = page_number()
    rows = boards.team_board(challenge, division_id, page)
    return render_template("challenges/teams.html", challenge=challenge, rows=rows, divisions=divisions,
                           division_id=division_id, page=page, has_next=len(rows) == boards.PAGE_SIZE,
                           unit=score_unit(challenge))


@bp.route("/challenges/<slug>/teams/<int:team_id>")
def team_page(slug, team_id):
    challenge = challenge_or_404(slug)
    id_or_404(team_id)
    team = db.session.scalar(sa.select(Team).where(Team.id == team_id, Team.challenge_id == challenge.id))
    if team is None:
        abort(404)
    page = page_number()
    rows = boards.individual_board(challenge, page, team_id=team.id)
    total = db.session.scalar(sa.select(TeamTotal).where(TeamTotal.team_id == team.id))
    division = db.session.get(Division, team.division_id) if team.division_id else None
    registration = my_registration(challenge)
    is_member = registration is not None and registration.team_id == team.id
    from kindstride.fundraising.views import donation_gateways

    return render_template("challenges/team.html", challenge=challenge, team=team, rows=rows, total=total,
                           division=division, is_member=is_member, page=page, can_donate=bool(donation_gateways()),
                           has_next=len(rows) == boards.PAGE_SIZE, unit=score_unit(challenge))


# ---------------------------------------------------------------- registering and teams

@bp.route("/challenges/<slug>/register", methods=["GET", "POST"])
@login_required
def register_page(slug):
    challenge = challenge_or_404(slug)
    if my_registration(challenge) is not None:
        flash(_("You are already registered for this challenge."), "info")
        return redirect(url_for("challenges.challenge_page", slug=challenge.slug))
    modes = (["alone"] if challenge.allow_individual else []) + (["create", "join", "code"]
                                                                    if challenge.allow_teams else [])
    errors = FormErrors()
    if request.method == "POST":
        mode = request.form.get("mode") if request.form.get("mode") in modes else None
        if mode is None:
            errors.add("mode", _("Choose how you take part."))
        data = _team_choice(mode, challenge, errors) if mode else None
        gender = request.form.get("gender") or None
        birth_year = form_value("birth_year", 10)
        if not errors:
            data.update(gender=gender, birth_year=birth_year or None,
                        beneficiary_id=request.form.get("beneficiary_id", type=int))
            created = None
            try:
                registration = services.register(challenge, g.user, data)
                if challenge.entry_fee_minor:
                    gateway = form_value("gateway", 30)
                    _payment, created = services.start_entry_fee(
                        challenge, registration, g.user,
                        {"gateway": gateway, "idempotency_key": form_value("idempotency_key", 64)},
                        return_url=url_for("payments.payer_return", gateway_name=gateway or "none", _external=True),
                        notify_url=url_for("payments.webhook", gateway_name=gateway or "none", _external=True))
                db.session.commit()
            except services.ChallengeError as error:
                db.session.rollback()
                errors = errors_from(error, TEAM_FIELDS + ("beneficiary_id", "gateway"),
                                     rename={"challenge": GENERAL, "idempotency_key": "gateway"})
            else:
                if created is not None and created.redirect_url:
                    return redirect(created.redirect_url)  # the ticket is paid on the gateway's page
                flash(_("You are registered for %(title)s. Your bib number is %(bib)s.", title=challenge.title,
                        bib=registration.bib), "success")
                return redirect(url_for("challenges.challenge_page", slug=challenge.slug))
    return render_template(
        "challenges/register.html", challenge=challenge, errors=errors, modes=modes,
        mode=request.form.get("mode") or modes[0], division_options=_division_options(challenge),
        teams=_teams_to_join(challenge) if challenge.allow_teams else [], genders=GENDER_LABELS,
        is_open=registration_open(challenge),
        beneficiary_options=[(b.id, b.name) for b in beneficiaries_of(challenge)],
        gateway_options=[(name, plugin_text(gateway.label)) for name, gateway in gateways_of(g.tenant).items()]
        if challenge.entry_fee_minor else [],
        entry_fee=money(challenge.entry_fee_minor, g.tenant.currency) if challenge.entry_fee_minor else None,
        idempotency_key=request.form.get("idempotency_key") or secrets.token_urlsafe(16),
    ), (400 if errors else 200)


@bp.route("/challenges/<slug>/team", methods=["GET", "POST"])
@login_required
def switch_team_page(slug):
    challenge = challenge_or_404(slug)
    registration = my_registration(challenge)
    if registration is None:
        flash(_("Register for the challenge first."), "info")
        return redirect(url_for("challenges.register_page", slug=challenge.slug))
    if not challenge.allow_teams:
        abort(404)
    started = utcnow() >= challenge.counting_start
    locked = started and challenge.team_switch_policy == SWITCH_LOCKED
    modes = (["none"] if challenge.allow_individual and registration.team_id else []) + ["join", "code", "create"]
    errors = FormErrors()
    if request.method == "POST" and not locked:
        mode = request.form.get("mode") if request.form.get("mode") in modes else None
        if mode is None:
            errors.add("mode", _("Choose a team, or how to change."))
        data = _team_choice(mode, challenge, errors) if mode else None
        if not errors:
            try:
                services.switch_team(challenge, registration, g.user, data)
                db.session.commit()
            except services.ChallengeError as error:
                db.session.rollback()
                errors = errors_from(error, TEAM_FIELDS, rename={"challenge": GENERAL})
            else:
                team = db.session.get(Team, registration.team_id) if registration.team_id else None
                if team is None:
                    flash(_("You are no longer in a team."), "success")
                else:
                    flash(_("You are now in team %(team)s.", team=team.name), "success")
                return redirect(url_for("challenges.challenge_page", slug=challenge.slug))
    elif request.method == "POST":
        errors.add(GENERAL, _("Teams are locked: the challenge has started."))
    current = db.session.get(Team, registration.team_id) if registration.team_id else None
    return render_template(
        "challenges/switch_team.html", challenge=challenge, registration=registration, current=current,
        errors=errors, modes=modes, mode=request.form.get("mode"), started=started, locked=locked,
        division_options=_division_options(challenge), teams=_teams_to_join(challenge, registration.team_id),
        start=local_datetime(challenge.counting_start, challenge.timezone),
    ), (400 if errors else 200)


# ---------------------------------------------------------------- my activities

@bp.route("/activities")
@login_required
def my_activities():
    return _activities_page(FormErrors(), None)


def _activities_page(errors, error_result_id, status=200):
    page = page_number()
    activities = db.session.scalars(
        sa.select(Activity).where(Activity.user_id == g.user.id).order_by(Activity.start.desc(), Activity.id.desc())
        .limit(ACTIVITIES_PAGE + 1).offset((page - 1) * ACTIVITIES_PAGE)).all()
    results = {}
    if activities:
        rows = db.session.execute(
            sa.select(ActivityResult, Challenge).join(Challenge, Challenge.id == ActivityResult.challenge_id)
            .where(ActivityResult.activity_id.in_([a.id for a in activities[:ACTIVITIES_PAGE]]))
            .order_by(Challenge.title, Challenge.id)).all()
        for result, challenge in rows:
            results.setdefault(result.activity_id, []).append({
                "result": result, "challenge": challenge, "unit": score_unit(challenge),
                "status": STATUS_LABELS.get(result.status, result.status),
                "reasons": [reason_message(reason) for reason in result.reasons],
                "appeal": APPEAL_LABELS.get(result.appeal_state),
                "can_appeal": result.status == REJECTED and result.appeal_state is None,
            })
    listed = {item["result"].id for items in results.values() for item in items}
    if error_result_id is not None and error_result_id not in listed:
        # The activity is not on this page: its errors go to the top of the page, or nobody would see them.
        for field in [name for name in errors if name != GENERAL]:
            for message in errors.pop(field):
                errors.add(GENERAL, f"{field}: {message}")
    return render_template("challenges/my_activities.html", activities=activities[:ACTIVITIES_PAGE],
                           results=results, page=page, has_next=len(activities) > ACTIVITIES_PAGE, errors=errors,
                           error_result_id=error_result_id, sources=SOURCE_LABELS), status


@bp.route("/results/<int:result_id>/appeal", methods=["POST"])
@login_required
def appeal(result_id):
    result = db.session.get(ActivityResult, id_or_404(result_id))
    if result is None:
        abort(404)
    try:
        moderation.appeal(result, g.user, form_value("message", 4000))
        db.session.commit()
    except moderation.ModerationError as error:
        db.session.rollback()
        if any(line.startswith("result: not your") for line in error.errors):
            abort(404)
        errors = errors_from(error, ("message", GENERAL), rename={"result": GENERAL})
        return _activities_page(errors, result_id, 400)
    flash(_("Your appeal is sent. A moderator will look at it."), "success")
    return redirect(url_for("challenges.my_activities") + f"#activity-{result.activity_id}")


@bp.route("/activities/upload", methods=["GET", "POST"])
@login_required
def upload_page():
    errors = FormErrors()
    outcomes = None
    if request.method == "POST":
        files = [f for f in request.files.getlist("files") if f and f.filename]
        if not files:
            errors.add("files", _("Choose one or more activity files."))
        else:
            from kindstride.activities import upload_jobs
            from kindstride.activities.uploads import import_uploads

            uploads = [(f.filename, f.read()) for f in files]
            if upload_jobs.is_long(uploads):
                # Hundreds of files: a job imports them while the progress page shows how far it has got.
                upload_id = upload_jobs.start(g.user, uploads)
                db.session.commit()
                return redirect(url_for("challenges.upload_progress_page", upload_id=upload_id), 303)
            outcomes = import_uploads(g.user, uploads)
            db.session.commit()
    status = 400 if errors or (outcomes is not None and not any(o["activity_id"] for o in outcomes)) else 200
    return render_template("challenges/upload.html", errors=errors, outcomes=outcomes, accept=UPLOAD_ACCEPT), status


def _own_upload(upload_id):
    """The progress record of an upload of the signed-in person's; anyone else's (or none) is not found."""
    from kindstride.activities import upload_jobs

    record = upload_jobs.record_of(upload_id, g.user)
    if record is None:
        abort(404)
    return record


def _upload_status(record):
    from kindstride.activities import upload_jobs

    done, total = int(record.get("done") or 0), int(record.get("total") or 0)
    numbers = {"done": format_decimal(done), "total": format_decimal(total),
               **{status: format_decimal(count) for status, count in upload_jobs.counts(record["items"]).items()}}
    failed = (_("The uploaded files could not be read back. Please upload them again.") if record.get("lost")
              else _("The upload stopped after %(done)s of %(total)s files. It is tried again in a few minutes.",
                     **numbers))
    return job_progress.status(record, {
        job_progress.QUEUED: _("Your files are uploaded and wait their turn to be read."),
        job_progress.RUNNING: _("Reading your files: %(done)s of %(total)s done.", **numbers),
        job_progress.DONE: _("All %(total)s files are read: %(stored)s stored, %(duplicate)s uploaded before, "
                         "%(refused)s refused.", **numbers),
        job_progress.FAILED: failed,
    })


@bp.route("/activities/uploads/<upload_id>")
@login_required
def upload_progress_page(upload_id):
    """A long upload's progress bar; once the job has ended, one outcome per file."""
    record = _own_upload(upload_id)
    job = _upload_status(record)
    return render_template("challenges/upload_progress.html", job=job, upload_id=upload_id,
                           outcomes=None if job["active"] else record["items"])


@bp.route("/activities/uploads/<upload_id>/progress")
@login_required
def upload_progress(upload_id):
    """The upload's progress as JSON, for kindstride-progress.js to update the page's bar."""
    return job_progress.status_response(_upload_status(_own_upload(upload_id)))


DURATION = re.compile(r"^(?:(\d{1,3}):)?([0-5]?\d):([0-5]\d)$")
MANUAL_FIELDS = ("sport", "date", "time", "duration", "distance_km", "title", GENERAL)
MANUAL_RENAME = {"start": "date", "moving_s": "duration", "elapsed_s": "duration", "distance_m": "distance_km"}


def _manual_data(errors):
    """The manual entry form as add_entered() data; the start is read in the tenant's time zone."""
    data = {"sport": form_value("sport", 20), "title": form_value("title", 200)}
    try:
        day = datetime.strptime(form_value("date", 20), "%Y-%m-%d").date()
    except ValueError:
        errors.add("date", _("Enter the date as YYYY-MM-DD."))
        day = None
    try:
        clock = time.fromisoformat(form_value("time", 20))
    except ValueError:
        errors.add("time", _("Enter the start time as HH:MM."))
        clock = None
    if day and clock:
        local = datetime.combine(day, clock.replace(tzinfo=None), tzinfo=zoneinfo.ZoneInfo(g.tenant.timezone))
        data["start"] = local.astimezone(zoneinfo.ZoneInfo("UTC")).isoformat()
    match = DURATION.match(form_value("duration", 20))
    if match:
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        data["moving_s"] = hours * 3600 + minutes * 60 + seconds
    else:
        errors.add("duration", _("Enter the moving time as h:mm:ss, for example 0:42:30."))
    try:
        distance = float(form_value("distance_km", 20).replace(",", "."))
        data["distance_m"] = round(distance * 1000, 1)
    except ValueError:
        errors.add("distance_km", _("Enter the distance in kilometres, for example 5.2."))
    return data


@bp.route("/activities/new", methods=["GET", "POST"])
@login_required
def manual_entry_page():
    errors = FormErrors()
    if request.method == "POST":
        data = _manual_data(errors)
        if not errors:
            try:
                activity = add_entered(g.user, data, source="manual")
                db.session.commit()
            except ActivityError as error:
                db.session.rollback()
                errors = errors_from(error, MANUAL_FIELDS, rename=MANUAL_RENAME)
            else:
                flash(_("Activity saved. It is checked against the rules of your challenges."), "success")
                return redirect(url_for("challenges.my_activities") + f"#activity-{activity.id}")
    sport_options = [(sport, SPORT_LABELS.get(sport, sport)) for sport in SPORTS]
    return render_template("challenges/manual_entry.html", errors=errors, sport_options=sport_options,
                           timezone=g.tenant.timezone), (400 if errors else 200)
