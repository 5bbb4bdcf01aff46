"""Fundraising pages of a tenant's site: the money block of a challenge page, the donate flow (no account
needed: VNPay by redirect, Stripe with its Payment Element), where a donor lands after paying, participants'
fundraising pages, and sponsors' pledges and statements.

Server-rendered and usable without JavaScript wherever a form suffices (Stripe's card field is the one
exception, and its page says so). Amounts are typed in major units in the tenant's locale and converted
exactly to the currency's minor unit (Decimal, never floats); money figures are ledger sums, except a
participant's own total (see `raised_for`).
"""

import re
import secrets
from decimal import Decimal
from urllib.parse import urlsplit

import sqlalchemy as sa
from babel.numbers import NumberFormatError, get_currency_precision, parse_decimal
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_decimal, get_locale, ngettext
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from kindstride.accounts.forms import FormErrors, form_value
from kindstride.accounts.session import login_required, role_required
from kindstride.challenges import services as challenges
from kindstride.challenges.admin_views import _description, _posted, _shown, param_fields, ruleset_from_state
from kindstride.challenges.models import DRAFT, Challenge, Registration, Team
from kindstride.challenges.views import GENERAL, challenge_or_404, errors_from, id_or_404
from kindstride.db import db
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Beneficiary, Donation, FundraisingPage, Pledge
from kindstride.fundraising.receipts import money
from kindstride.leaderboards import services as boards
from kindstride.payments import services as payments
from kindstride.payments.contract import SUCCEEDED, GatewayError
from kindstride.payments.models import Payment
from kindstride.plugins import plugin_host
from kindstride.rules.labels import plugin_text
from kindstride.security import content_security_policy
from kindstride.web.sites import tenant_site_only

bp = Blueprint("fundraising", __name__, template_folder="templates")
bp.before_request(tenant_site_only)

STRIPE_JS_URL = "https://js.stripe.com/v3/"  # KINDSTRIDE_GATEWAY_ENDPOINTS "stripe.js_url" overrides it
STRIPE_API_ORIGIN = "https://api.stripe.com"
MAX_ID = 2**63 - 1
AMOUNT_CHARACTERS = re.compile(r"^[+-]?[0-9.,]+$")
SPACES = re.compile(r"[\s\u00a0\u202f]")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
STORY_LIMIT = 5000
PUBLIC_DONATIONS = 10
REMEMBERED_PAYMENTS = 3
DONATE_FIELDS = ("amount", "gateway", "donor_name", "donor_email", "message", "beneficiary_id", GENERAL)
DONATE_RENAME = {"currency": GENERAL, "team_id": GENERAL, "registration_id": GENERAL, "idempotency_key": GENERAL}
PLEDGE_SECTION = "pledge"
PLEDGE_FIELDS = ("rule", "sponsor_name", "team_id", "division_id", "beneficiary_id", GENERAL)


# ---------------------------------------------------------------- amounts typed by people

class AmountError(ValueError):
    """An amount a person typed cannot be taken; the message says why, in the tenant's language."""


def major_text(minor, currency, grouping=True):
    """Minor units as a plain number in major units, in the tenant's locale ("10.50", "50.000")."""
    precision = get_currency_precision(currency)
    pattern = ("#,##0" if grouping else "0") + ("." + "0" * precision if precision else "")
    return format_decimal(Decimal(int(minor)).scaleb(-precision), format=pattern)


def to_minor(text, currency, example=None):
    """An amount typed in major units, in the tenant's locale, as exact minor units of the currency.

    Raises AmountError for anything that is not a positive amount the currency can hold: letters, signs,
    exponents, more decimals than the currency has (a fraction of a dong), or more than any payment allows.
    """
    text = SPACES.sub("", text or "")[:40]
    example = example or major_text(10 ** get_currency_precision(currency) * 50, currency)
    if not text:
        raise AmountError(_("Enter an amount."))
    if text.startswith("-"):
        raise AmountError(_("Enter an amount greater than zero."))
    if not AMOUNT_CHARACTERS.match(text):
        raise AmountError(_("Enter the amount in figures, for example %(example)s.", example=example))
    try:
        value = parse_decimal(text.lstrip("+"), locale=get_locale(), strict=True)
    except NumberFormatError:
        raise AmountError(_("Enter the amount in figures, for example %(example)s.", example=example)) from None
    if not value.is_finite() or value <= 0:
        raise AmountError(_("Enter an amount greater than zero."))
    precision = get_currency_precision(currency)
    minor = value.scaleb(precision)
    if minor != minor.to_integral_value():
        if precision == 0:
            raise AmountError(_("%(currency)s has no smaller unit: enter a whole number.", currency=currency))
        raise AmountError(ngettext("Enter at most %(num)s decimal place.", "Enter at most %(num)s decimal places.",
                                   precision))
    if minor > payments.MAX_AMOUNT:
        raise AmountError(_("This amount is too large."))
    return int(minor)


def _id_value(value):
    """A submitted id as an int, or None when it is not one (or could not be a database id)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


# ---------------------------------------------------------------- figures shared with templates

def donation_gateways():
    """The tenant's configured gateways that can charge its currency, by name."""
    return {name: gateway for name, gateway in payments.gateways_of(g.tenant).items()
            if g.tenant.currency in gateway.currencies}


def presets(currency):
    """Suggested amounts in minor units: the service's presets, else multiples of the smallest gift."""
    if currency in fundraising.DONATION_PRESETS:
        return fundraising.DONATION_PRESETS[currency]
    unit = max(fundraising.MINIMUM_DONATION.get(currency, 1), 10 ** get_currency_precision(currency))
    return tuple(unit * factor for factor in (5, 10, 20, 50))


def raised_for(registration, currency):
    """What donors gave on a participant's page, net of refunds.

    Not a ledger sum: the ledger keeps donations per challenge and beneficiary
    (donations:<challenge>:<beneficiary>), not per participant, so this adds up the participant's
    succeeded donations minus what was refunded of them, from the Donation and Payment rows. Those rows are
    written by the same steps that write the ledger (a payment is "succeeded" once it is credited, and
    `refunded` grows with each recorded refund), so the figure agrees with the ledger's totals.
    """
    return int(db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Donation.amount - Payment.refunded), 0)).select_from(Donation)
        .join(Payment, Payment.id == Donation.payment_id)
        .where(Donation.registration_id == registration.id, Donation.currency == currency,
               Payment.status == SUCCEEDED)))


def recent_donations(registration, limit=PUBLIC_DONATIONS):
    """A participant's succeeded donations for their public page; anonymous donors stay anonymous."""
    rows = db.session.scalars(
        sa.select(Donation).join(Payment, Payment.id == Donation.payment_id)
        .where(Donation.registration_id == registration.id, Payment.status == SUCCEEDED)
        .order_by(Donation.created_at.desc(), Donation.id.desc()).limit(limit)).all()
    return [{"name": None if d.anonymous else d.donor_name, "amount": d.amount, "currency": d.currency,
             "message": d.message, "created_at": d.created_at} for d in rows]


@bp.app_template_global("ks_money")
def money_global(amount, currency=None):
    return money(int(amount or 0), currency or g.tenant.currency)


@bp.app_template_global("ks_challenge_money")
def challenge_money(challenge):
    """The money block of a challenge page: ledger totals, per beneficiary, and recent public donations."""
    totals = fundraising.money_totals(challenge)
    pledged = getattr(totals, "pledged_by_beneficiary", None) or {}
    beneficiaries = fundraising.beneficiaries_of(challenge)
    return {
        "totals": totals,
        "beneficiaries": [{"beneficiary": b, "donated": totals.by_beneficiary.get(b.id, 0),
                           "pledged": pledged.get(b.id, 0)} for b in beneficiaries],
        "general": {"donated": totals.by_beneficiary.get(None, 0), "pledged": pledged.get(None, 0)},
        "recent": fundraising.public_donations(challenge, limit=PUBLIC_DONATIONS),
        "can_donate": bool(donation_gateways()),
        "can_pledge": g.user is not None and bool(g.roles.intersection(("sponsor", "admin"))),
    }


@bp.app_template_global("ks_strava")
def strava_state():
    """For the account page: None when Strava is not set up on this platform, else the user's connection."""
    from kindstride.activities import strava

    if not strava.configured() or g.get("user") is None:
        return None
    connection = strava.connection_of(g.user)
    return {"connection": connection if connection is not None and connection.is_active else None}


# ---------------------------------------------------------------- after paying

def _remember_payment(reference, client_secret):
    """The Stripe client secret of a payment this browser started, so its card page can be shown again."""
    # A list, not a dict: the session's JSON may sort a dict's keys, and the newest must stay.
    remembered = [pair for pair in _remembered_pairs() if pair[0] != reference]
    session["ks_payments"] = [*remembered, [reference, client_secret]][-REMEMBERED_PAYMENTS:]


def _remembered_pairs():
    value = session.get("ks_payments")
    if not isinstance(value, list):
        return []
    return [pair for pair in value if isinstance(pair, list) and len(pair) == 2]


def _remembered(reference):
    return next((secret for ref, secret in _remembered_pairs() if ref == reference), None)


def _payment_or_404(reference):
    payment = db.session.scalar(sa.select(Payment).where(Payment.reference == reference[:100]))
    if payment is None:
        abort(404)
    return payment


@bp.route("/donations/<reference>")
def payment_status(reference):
    payment = _payment_or_404(reference)
    donation = db.session.scalar(sa.select(Donation).where(Donation.payment_id == payment.id))
    challenge = db.session.get(Challenge, donation.challenge_id) if donation else None
    resume = (payment.gateway == "stripe" and payment.status in ("pending", "requires_action", "failed")
              and _remembered(payment.reference) is not None)
    return render_template("fundraising/payment_status.html", payment=payment, donation=donation,
                           challenge=challenge, resume=resume)


# ---------------------------------------------------------------- the donate flow

def _target(challenge):
    """The team or participant a donation goes to (?team= / ?participant=, kept in the form): 404 if foreign."""
    source = request.form if request.method == "POST" else request.args
    team = participant = None
    if source.get("team"):
        team_id = _id_value(source.get("team"))
        team = team_id and db.session.scalar(sa.select(Team).where(Team.id == team_id,
                                                                   Team.challenge_id == challenge.id))
        if not team:
            abort(404)
    if source.get("participant"):
        registration_id = _id_value(source.get("participant"))
        participant = registration_id and db.session.scalar(
            sa.select(Registration).where(Registration.id == registration_id,
                                          Registration.challenge_id == challenge.id))
        if not participant:
            abort(404)
    return team, participant


def _donation_data(challenge, gateways, beneficiaries, errors):
    """The donate form as donate() data; errors in the donor's language before anything is sent."""
    currency = g.tenant.currency
    choices = presets(currency)
    other = form_value("other_amount", 40)
    chosen = request.form.get("preset")
    amount = None
    if other or chosen == "other":
        try:
            amount = to_minor(other, currency, example=major_text(choices[0], currency))
        except AmountError as error:
            errors.add("amount", str(error))
    elif chosen and chosen.isdigit() and int(chosen) in choices:
        amount = int(chosen)
    else:
        errors.add("amount", _("Choose an amount, or type another one."))
    minimum = fundraising.MINIMUM_DONATION.get(currency, 1)
    if amount is not None and amount < minimum:
        errors.add("amount", _("The smallest donation is %(amount)s.", amount=money(minimum, currency)))
    gateway = request.form.get("gateway")
    if gateway not in gateways:
        errors.add("gateway", _("Choose how to pay."))
    name, email = form_value("donor_name", 200), form_value("donor_email", 254)
    if not name:
        errors.add("donor_name", _("Enter your name (it stays off public lists if you tick \"anonymous\")."))
    if not email or "@" not in email:
        errors.add("donor_email", _("Enter your email address: your receipt goes there."))
    message = (request.form.get("message") or "").strip()
    if len(message) > 1000:
        errors.add("message", _("Keep the message to 1,000 characters."))
    beneficiary_id = None
    if beneficiaries and request.form.get("beneficiary_id"):
        beneficiary_id = _id_value(request.form.get("beneficiary_id"))
        if beneficiary_id not in {b.id for b in beneficiaries}:
            errors.add("beneficiary_id", _("Choose one of the listed charities."))
    return {"amount": amount, "currency": currency, "gateway": gateway, "donor_name": name, "donor_email": email,
            "anonymous": "anonymous" in request.form, "message": message, "beneficiary_id": beneficiary_id}


def _existing_payment(key):
    return db.session.scalar(sa.select(Payment).where(Payment.idempotency_key == key))


def _after_donation(payment, created):
    """Where the donor goes once the payment is started (or found again for the same form)."""
    if created is not None and created.client_secret:
        _remember_payment(payment.reference, created.client_secret)
    if payment.status == SUCCEEDED:
        return redirect(url_for("fundraising.payment_status", reference=payment.reference), 303)
    if created is not None and created.redirect_url:
        return redirect(created.redirect_url, 303)
    if payment.gateway == "stripe" and _remembered(payment.reference):
        return redirect(url_for("fundraising.card_page", reference=payment.reference), 303)
    # The same form sent twice (a double click answered by the first request): the payment exists, and
    # where it continues was given to the first request. The status page says what to do.
    return redirect(url_for("fundraising.payment_status", reference=payment.reference), 303)


@bp.route("/challenges/<slug>/donate", methods=["GET", "POST"])
def donate_page(slug):
    challenge = challenge_or_404(slug)
    team, participant = _target(challenge)
    gateways = donation_gateways()
    beneficiaries = fundraising.beneficiaries_of(challenge)
    errors = FormErrors()
    key = request.form.get("idempotency_key") if request.method == "POST" else None
    if request.method == "POST":
        if not gateways:
            abort(404)
        if not key or not KEY_PATTERN.match(key):
            key = secrets.token_urlsafe(24)
            errors.add(GENERAL, _("This form is out of date. Check it and send it again."))
        data = _donation_data(challenge, gateways, beneficiaries, errors)
        if not errors:
            data.update(team_id=team.id if team else None, registration_id=participant.id if participant else None,
                        idempotency_key=key)
            status = 400
            try:
                donation, created = fundraising.donate(
                    challenge, data,
                    return_url=url_for("payments.payer_return", gateway_name=data["gateway"], _external=True),
                    notify_url=url_for("payments.webhook", gateway_name=data["gateway"], _external=True),
                    payer_ip=request.remote_addr or "127.0.0.1")
                db.session.commit()
            except fundraising.FundraisingError as error:
                db.session.rollback()
                errors = errors_from(error, DONATE_FIELDS, rename=DONATE_RENAME)
                if any(line.startswith("idempotency_key:") for line in error.errors):
                    key = secrets.token_urlsafe(24)  # sent before with other details: this is a new gift
            except IntegrityError:
                # The same form twice at the same moment: the other request created the payment.
                db.session.rollback()
                existing = _existing_payment(key)
                if existing is None:
                    raise
                return _after_donation(existing, None)
            except GatewayError:
                db.session.rollback()
                current_app.logger.warning("tenant %s: %s could not start a donation", g.tenant.slug,
                                           data["gateway"], exc_info=True)
                errors.add(GENERAL, _("The payment provider could not be reached. Nothing was charged. "
                                      "Please try again in a moment, or choose another way to pay."))
                status = 502
            else:
                payment = db.session.get(Payment, donation.payment_id)
                return _after_donation(payment, created)
            return _donate_form(challenge, team, participant, gateways, beneficiaries, errors, key, status)
    return _donate_form(challenge, team, participant, gateways, beneficiaries, errors,
                        key or secrets.token_urlsafe(24), 400 if errors else 200)


def _donate_form(challenge, team, participant, gateways, beneficiaries, errors, key, status):
    currency = g.tenant.currency
    choices = presets(currency)
    posted = request.method == "POST"
    return render_template(
        "fundraising/donate.html", challenge=challenge, team=team, participant=participant, errors=errors,
        gateways=[(name, plugin_text(gateway.label)) for name, gateway in gateways.items()],
        beneficiaries=beneficiaries,
        presets=[(str(amount), money(amount, currency)) for amount in choices], key=key, form=request.form,
        preset=request.form.get("preset") if posted else str(choices[1 if len(choices) > 1 else 0]),
        beneficiary_id=request.form.get("beneficiary_id") if posted else str(
            getattr(participant, "beneficiary_id", None) or ""),
        gateway=request.form.get("gateway") if posted else next(iter(gateways), None),
        minimum=money(fundraising.MINIMUM_DONATION.get(currency, 1), currency),
        example=major_text(choices[0], currency), currency=currency,
    ), status


def stripe_js_url():
    """Where Stripe.js is loaded from: Stripe itself, or a stand-in (localstripe) the operator names."""
    url = current_app.config["GATEWAY_ENDPOINTS"].get("stripe.js_url") or STRIPE_JS_URL
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"KINDSTRIDE_GATEWAY_ENDPOINTS stripe.js_url is not an http(s) address: {url!r}")
    return url


def _origin(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def stripe_csp(js_url):
    """The site's policy plus what the Payment Element needs: Stripe.js, its frames, and Stripe's API."""
    js_origin = _origin(js_url)
    api_base = current_app.config["GATEWAY_ENDPOINTS"].get("stripe.api_base")
    scripts, frames = [js_origin], [js_origin]
    if urlsplit(js_url).hostname == "js.stripe.com":
        scripts.append("https://*.js.stripe.com")
        frames += ["https://*.js.stripe.com", "https://hooks.stripe.com"]
    return content_security_policy(script_src=scripts, frame_src=frames,
                                   connect_src=[_origin(api_base) if api_base else STRIPE_API_ORIGIN])


@bp.route("/donations/<reference>/card")
def card_page(reference):
    """Stripe's Payment Element for a donation started here: the card is typed into Stripe's own frame and
    confirmed in the browser; Stripe then sends the donor back to the payer-return address."""
    payment = _payment_or_404(reference)
    if payment.gateway != "stripe" or payment.purpose != "donation":
        abort(404)
    if payment.status == SUCCEEDED:
        return redirect(url_for("fundraising.payment_status", reference=payment.reference))
    donation = db.session.scalar(sa.select(Donation).where(Donation.payment_id == payment.id))
    challenge = db.session.get(Challenge, donation.challenge_id)
    settings = (g.tenant.settings.get("gateways") or {}).get("stripe") or {}
    js_url = stripe_js_url()
    page = render_template(
        "fundraising/card.html", payment=payment, donation=donation, challenge=challenge, js_url=js_url,
        publishable_key=settings.get("publishable_key", ""), client_secret=_remembered(payment.reference),
        return_url=url_for("payments.payer_return", gateway_name="stripe", _external=True),
        locale=g.tenant.locale)
    response = make_response(page)
    response.headers["Content-Security-Policy"] = stripe_csp(js_url)
    response.headers["Cache-Control"] = "private, no-store"  # it carries the payment's client secret
    return response


# ---------------------------------------------------------------- participants' fundraising pages

def _registration_or_404(challenge, registration_id):
    id_or_404(registration_id)
    registration = db.session.scalar(sa.select(Registration).where(Registration.id == registration_id,
                                                                   Registration.challenge_id == challenge.id))
    if registration is None:
        abort(404)
    return registration


def _page_of(registration):
    return db.session.scalar(sa.select(FundraisingPage).where(FundraisingPage.registration_id == registration.id))


@bp.route("/challenges/<slug>/participants/<int:registration_id>")
def participant_page(slug, registration_id):
    challenge = challenge_or_404(slug)
    registration = _registration_or_404(challenge, registration_id)
    total = boards.participant_total(registration)
    currency = g.tenant.currency
    page = _page_of(registration)
    raised = raised_for(registration, currency)
    goal = page.goal_amount if page else None
    progress = None
    if goal:
        progress = {"value": min(raised, goal), "max": goal,
                    "percent": format_decimal(min(raised / goal * 100, 100), format="#,##0.#")}
    team = db.session.get(Team, registration.team_id) if registration.team_id else None
    return render_template(
        "fundraising/participant.html", challenge=challenge, registration=registration, team=team,
        distance_m=total.distance_m if total else 0, rank=boards.rank_of(challenge, registration) if total else None,
        page=page, raised=raised, goal=goal, progress=progress, donations=recent_donations(registration),
        is_owner=g.user is not None and registration.user_id == g.user.id, can_donate=bool(donation_gateways()))


@bp.route("/challenges/<slug>/my-page", methods=["GET", "POST"])
@login_required
def my_page(slug):
    challenge = challenge_or_404(slug)
    registration = challenges.registration_of(challenge, g.user)
    if registration is None:
        flash(_("Register for the challenge first: your fundraising page comes with your registration."), "info")
        return redirect(url_for("challenges.challenge_page", slug=challenge.slug))
    page = _page_of(registration)
    currency = g.tenant.currency
    errors = FormErrors()
    if request.method == "POST":
        goal_text = form_value("goal", 40)
        goal = None
        if goal_text:
            try:
                goal = to_minor(goal_text, currency)
            except AmountError as error:
                errors.add("goal", str(error))
        story = (request.form.get("story") or "").strip().replace("\r\n", "\n")
        if len(story) > STORY_LIMIT:
            errors.add("story", _("Keep your story to %(limit)s characters.", limit=format_decimal(STORY_LIMIT)))
        if not errors:
            if page is None:
                page = FundraisingPage(registration_id=registration.id)
                db.session.add(page)
            page.goal_amount, page.story = goal, story
            db.session.commit()
            flash(_("Your fundraising page is saved."), "success")
            return redirect(url_for("fundraising.participant_page", slug=challenge.slug,
                                    registration_id=registration.id))
        values = {"goal": goal_text, "story": story}
    else:
        values = {"goal": major_text(page.goal_amount, currency) if page and page.goal_amount else "",
                  "story": page.story if page else ""}
    return render_template("fundraising/my_page.html", challenge=challenge, registration=registration,
                           errors=errors, values=values, currency=currency,
                           example=major_text(presets(currency)[-1] * 10, currency),
                           story_limit=STORY_LIMIT), (400 if errors else 200)


# ---------------------------------------------------------------- sponsors: pledges and statements

@bp.route("/sponsor/pledges")
@role_required("sponsor", "admin")
def my_pledges():
    from kindstride.fundraising.statements import pledge_figures

    rows = db.session.execute(
        sa.select(Pledge, Challenge).join(Challenge, Challenge.id == Pledge.challenge_id)
        .where(Pledge.sponsor_id == g.user.id).order_by(Pledge.created_at.desc(), Pledge.id.desc())).all()
    rules = plugin_host().strategies("register_pledge_rules", g.tenant)
    pledges = [{"pledge": pledge, "challenge": challenge, "figures": pledge_figures(pledge),
                "rule": plugin_text(getattr(rules.get(pledge.rule), "label", pledge.rule))}
               for pledge, challenge in rows]
    open_challenges = db.session.scalars(sa.select(Challenge).where(Challenge.status != DRAFT)
                                         .order_by(Challenge.counting_start.desc()).limit(50)).all()
    return render_template("fundraising/my_pledges.html", pledges=pledges, challenges=open_challenges)


def pledge_section(from_form):
    """The pledge rules as one "pick one" section of generated parameter forms (the ruleset editor's helper)."""
    rules = plugin_host().strategies("register_pledge_rules", g.tenant)
    chosen = request.form.get("rule") if from_form else None
    strategies = []
    for name, strategy in rules.items():
        specs = param_fields(strategy, PLEDGE_SECTION)
        for spec in specs:
            spec.value = _posted(spec) if from_form else _shown(spec, spec.default)
        strategies.append({"name": name, "label": plugin_text(getattr(strategy, "label", name)), "used": name == chosen,
                           "description": _description(strategy), "fields": specs})
    return {"key": PLEDGE_SECTION, "many": False, "strategies": strategies}


def _pledge_errors(error, rule):
    """add_pledge's 'params.cap: message' lines next to the generated field of the chosen rule."""
    errors = FormErrors()
    for line in error.errors:
        path, _sep, message = line.partition(": ")
        if path.startswith("params.") and rule:
            param = path[len("params."):].split(".", 1)[0]
            errors.add(f"rule.{rule}" if param == "_schema" else f"p.{PLEDGE_SECTION}.{rule}.{param}", message)
        elif path in PLEDGE_FIELDS:
            errors.add(path, message)
        else:
            errors.add(GENERAL, line)
    return errors


@bp.route("/challenges/<slug>/pledges", methods=["GET", "POST"])
@role_required("sponsor", "admin")
def pledge_page(slug):
    challenge = challenge_or_404(slug)
    section = pledge_section(from_form=request.method == "POST")
    errors = FormErrors()
    if request.method == "POST":
        ruleset, _positions = ruleset_from_state([section], errors)
        entry = ruleset[PLEDGE_SECTION]
        if entry is None:
            errors.add("rule", _("Choose a pledge rule."))
        data = {"rule": entry["rule"] if entry else "", "params": entry["params"] if entry else {}}
        if form_value("sponsor_name", 200):
            data["sponsor_name"] = form_value("sponsor_name", 200)
        for name in ("team_id", "division_id", "beneficiary_id"):
            value = request.form.get(name)
            if value:
                data[name] = _id_value(value) or -1  # not an id: the service says it is not part of this challenge
        if not errors:
            try:
                pledge = fundraising.add_pledge(challenge, g.user, data)
                db.session.commit()
            except fundraising.FundraisingError as error:
                db.session.rollback()
                errors = _pledge_errors(error, data["rule"])
            else:
                flash(_("Thank you: your pledge is recorded. What it has accrued so far is on this page."), "success")
                return redirect(url_for("fundraising.my_pledges") + f"#pledge-{pledge.id}")
    teams = db.session.scalars(sa.select(Team).where(Team.challenge_id == challenge.id).order_by(Team.name)
                               .limit(500)).all()
    currency = g.tenant.currency
    return render_template(
        "fundraising/pledge.html", challenge=challenge, section=section, errors=errors, form=request.form,
        teams=[(t.id, t.name) for t in teams],
        divisions=[(d.id, d.name) for d in challenges.divisions_of(challenge)],
        beneficiaries=[(b.id, b.name) for b in db.session.scalars(
            sa.select(Beneficiary).where(Beneficiary.challenge_id == challenge.id).order_by(Beneficiary.name))],
        currency=currency, precision=get_currency_precision(currency),
        unit_example=money(10 ** get_currency_precision(currency), currency),
    ), (400 if errors else 200)


@bp.route("/sponsor/pledges/<int:pledge_id>/statement.pdf")
@role_required("sponsor", "admin")
def statement(pledge_id):
    from kindstride.fundraising.statements import statement_response

    id_or_404(pledge_id)
    pledge = db.session.get(Pledge, pledge_id)
    if pledge is None or (pledge.sponsor_id != g.user.id and "admin" not in g.roles):
        abort(404)
    return statement_response(pledge)
