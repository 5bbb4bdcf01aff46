"""The tenant admin's money console (/admin/money): beneficiaries, pledges and the payments sponsors make
against them, gateway payments and refunds, reconciliation, CSV exports; and the site's branding
(/admin/branding). Every page needs the admin role."""

import csv
import io
import re
import secrets
from decimal import Decimal

import sqlalchemy as sa
from babel.numbers import get_currency_precision
from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from kindstride import audit
from kindstride.accounts.forms import FormErrors, form_value
from kindstride.accounts.session import role_required
from kindstride.challenges import services as challenges
from kindstride.challenges.models import Challenge, Registration, Team
from kindstride.challenges.views import GENERAL, errors_from, id_or_404, page_number, score_unit
from kindstride.db import db
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Beneficiary, Donation, Pledge
from kindstride.fundraising.receipts import money
from kindstride.fundraising.statements import pledge_figures
from kindstride.fundraising.views import AmountError, major_text, to_minor
from kindstride.leaderboards.models import ParticipantTotal
from kindstride.payments import services as payments
from kindstride.payments.contract import SUCCEEDED
from kindstride.payments.models import Payment
from kindstride.payments.reconciliation import reconcile
from kindstride.plugins import plugin_host
from kindstride.rules.labels import plugin_text
from kindstride.tenancy.settings_schema import BrandingSchema, flatten_errors
from kindstride.web import logos
from kindstride.web.sites import tenant_site_only

bp = Blueprint("money_admin", __name__, template_folder="templates")
bp.before_request(tenant_site_only)

PAYMENTS_PAGE = 50
STATUS_LABELS = {
    "succeeded": _l("Paid"), "pending": _l("Pending"), "requires_action": _l("Waiting for the payer"),
    "failed": _l("Failed"), "canceled": _l("Canceled"),
}
PURPOSE_LABELS = {"donation": _l("Donation"), "entry_fee": _l("Entry fee")}
MIN_CONTRAST = 4.5  # WCAG 2 AA for normal text: white text on the primary colour (header, buttons)
BRANDING_FIELDS = ("primary_color", "accent_color", "tagline", "about", GENERAL)
TAGLINE_LIMIT, ABOUT_LIMIT = 200, 5000
CSV_FORMULA = re.compile(r"^[=+\-@\t\r]")


@bp.before_request
def _admins_only():
    if g.get("tenant") is None:
        return None
    return role_required("admin")(lambda: None)()


def _challenge(slug):
    challenge = challenges.get_challenge(slug)
    if challenge is None:
        abort(404)
    return challenge


def _challenges():
    return db.session.scalars(sa.select(Challenge).order_by(Challenge.counting_start.desc())).all()


# ---------------------------------------------------------------- CSV

def _cell(value):
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "'" + text if isinstance(value, str) and CSV_FORMULA.match(text) else text


def decimal_amount(minor, currency):
    """Minor units as an exact, plain decimal in major units for CSV ("10.50", "50000")."""
    if minor is None:
        return ""
    precision = get_currency_precision(currency)
    return f"{Decimal(int(minor)).scaleb(-precision):.{precision}f}"


def csv_response(filename, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8; header=present"
    response.headers["Content-Disposition"] = f'attachment; filename="{g.tenant.slug}-{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------- the console's front page

@bp.route("/admin/money/")
def index():
    rows = []
    for challenge in _challenges():
        totals = fundraising.money_totals(challenge)
        pledges = db.session.scalar(sa.select(sa.func.count()).select_from(Pledge)
                                    .where(Pledge.challenge_id == challenge.id))
        rows.append({"challenge": challenge, "totals": totals, "pledges": pledges})
    gateways = payments.gateways_of(g.tenant)
    return render_template("money_admin/index.html", rows=rows,
                           gateways=[plugin_text(gateway.label) for gateway in gateways.values()])


# ---------------------------------------------------------------- beneficiaries

@bp.route("/admin/money/<slug>/beneficiaries", methods=["GET", "POST"])
def beneficiaries_page(slug):
    challenge = _challenge(slug)
    errors = FormErrors()
    if request.method == "POST":
        data = {"name": form_value("name", 200), "description": (request.form.get("description") or "").strip()}
        if form_value("website", 300):
            data["website"] = form_value("website", 300)
        if not data["name"]:
            errors.add("name", _("Enter the charity's name."))
        else:
            try:
                beneficiary = fundraising.add_beneficiary(challenge, data)
                db.session.commit()
            except fundraising.FundraisingError as error:
                db.session.rollback()
                errors = errors_from(error, ("name", "description", "website", GENERAL))
            else:
                flash(_("%(name)s is now a beneficiary of %(challenge)s.", name=beneficiary.name,
                        challenge=challenge.title), "success")
                return redirect(url_for("money_admin.beneficiaries_page", slug=challenge.slug))
    totals = fundraising.money_totals(challenge)
    pledged = getattr(totals, "pledged_by_beneficiary", None) or {}
    rows = [{"beneficiary": b, "donated": totals.by_beneficiary.get(b.id, 0), "pledged": pledged.get(b.id, 0)}
            for b in fundraising.beneficiaries_of(challenge)]
    general = {"donated": totals.by_beneficiary.get(None, 0), "pledged": pledged.get(None, 0)}
    return render_template("money_admin/beneficiaries.html", challenge=challenge, rows=rows, totals=totals,
                           general=general, errors=errors, form=request.form), (400 if errors else 200)


# ---------------------------------------------------------------- pledges

def _pledges_page(challenge, errors=None, error_pledge_id=None, status=200):
    rules = plugin_host().strategies("register_pledge_rules", g.tenant)
    teams = dict(db.session.execute(sa.select(Team.id, Team.name).where(Team.challenge_id == challenge.id)).all())
    divisions = {d.id: d.name for d in challenges.divisions_of(challenge)}
    beneficiaries = {b.id: b.name for b in fundraising.beneficiaries_of(challenge)}
    rows = []
    for pledge in db.session.scalars(sa.select(Pledge).where(Pledge.challenge_id == challenge.id)
                                     .order_by(Pledge.created_at, Pledge.id)):
        if pledge.team_id:
            scope = _("Team %(name)s", name=teams.get(pledge.team_id, pledge.team_id))
        elif pledge.division_id:
            scope = _("Division %(name)s", name=divisions.get(pledge.division_id, pledge.division_id))
        else:
            scope = _("The whole challenge")
        rows.append({"pledge": pledge, "figures": pledge_figures(pledge), "scope": scope,
                     "rule": plugin_text(getattr(rules.get(pledge.rule), "label", pledge.rule)),
                     "beneficiary": beneficiaries.get(pledge.beneficiary_id)})
    return render_template("money_admin/pledges.html", challenge=challenge, rows=rows, errors=errors or FormErrors(),
                           error_pledge_id=error_pledge_id, form=request.form), status


@bp.route("/admin/money/<slug>/pledges")
def pledges_page(slug):
    return _pledges_page(_challenge(slug))


@bp.route("/admin/money/pledges/<int:pledge_id>/payments", methods=["POST"])
def record_pledge_payment(pledge_id):
    id_or_404(pledge_id)
    pledge = db.session.get(Pledge, pledge_id)
    if pledge is None:
        abort(404)
    challenge = db.session.get(Challenge, pledge.challenge_id)
    errors = FormErrors()
    reference = form_value("reference", 100)
    amount = None
    try:
        amount = to_minor(form_value("amount", 40), pledge.currency)
    except AmountError as error:
        errors.add("amount", str(error))
    outstanding = pledge_figures(pledge)["outstanding"]
    if amount is not None and amount > outstanding:
        errors.add("amount", _("Only %(amount)s is outstanding on this pledge.",
                               amount=money(outstanding, pledge.currency)))
    if not reference:
        errors.add("reference", _("Enter the bank transfer's reference, so the payment can be traced."))
    if not errors:
        try:
            fundraising.record_pledge_payment(pledge, amount, reference)
            db.session.commit()
        except fundraising.FundraisingError as error:
            db.session.rollback()
            errors = errors_from(error, ("amount", "reference", GENERAL))
        else:
            flash(_("A payment of %(amount)s from %(sponsor)s is recorded.", amount=money(amount, pledge.currency),
                    sponsor=pledge.sponsor_name), "success")
            return redirect(url_for("money_admin.pledges_page", slug=challenge.slug) + f"#pledge-{pledge.id}")
    return _pledges_page(challenge, errors, pledge.id, 400)


# ---------------------------------------------------------------- gateway payments and refunds

def _payments_page(errors=None, error_reference=None, status=200):
    page = page_number()
    purpose = request.args.get("purpose") if request.args.get("purpose") in ("donation", "entry_fee") else None
    query = sa.select(Payment).order_by(Payment.created_at.desc(), Payment.id.desc())
    if purpose:
        query = query.where(Payment.purpose == purpose)
    found = db.session.scalars(query.limit(PAYMENTS_PAGE + 1).offset((page - 1) * PAYMENTS_PAGE)).all()
    shown = found[:PAYMENTS_PAGE]
    donors = {}
    if shown:
        donors = {d.payment_id: d for d in db.session.scalars(
            sa.select(Donation).where(Donation.payment_id.in_([p.id for p in shown])))}
    rows = [{"payment": p, "donation": donors.get(p.id),
             "refundable": p.amount - p.refunded if p.status == SUCCEEDED else 0,
             "refund_default": major_text(p.amount - p.refunded, p.currency, grouping=False)} for p in shown]
    return render_template("money_admin/payments.html", rows=rows, page=page, has_next=len(found) > PAYMENTS_PAGE,
                           purpose=purpose, errors=errors or FormErrors(), error_reference=error_reference,
                           form=request.form, statuses=STATUS_LABELS, purposes=PURPOSE_LABELS,
                           refund_key=secrets.token_urlsafe(16)), status  # a double click is one refund


@bp.route("/admin/money/payments")
def payments_page():
    return _payments_page()


@bp.route("/admin/money/payments/<reference>/refund", methods=["POST"])
def refund(reference):
    payment = db.session.scalar(sa.select(Payment).where(Payment.reference == reference[:100]))
    if payment is None:
        abort(404)
    errors = FormErrors()
    left = payment.amount - payment.refunded
    amount = None
    if payment.status != SUCCEEDED:
        errors.add(GENERAL, _("Only a succeeded payment can be refunded."))
    elif request.form.get("full") == "1":
        amount = left
    else:
        try:
            amount = to_minor(form_value("amount", 40), payment.currency)
        except AmountError as error:
            errors.add("amount", str(error))
    if amount is not None and amount > left:
        errors.add("amount", _("At most %(amount)s can still be refunded.", amount=money(left, payment.currency)))
    elif amount is not None and amount <= 0:
        errors.add("amount", _("Nothing is left to refund on this payment."))
    if not errors:
        try:
            payments.refund(payment, amount, g.user, key=request.form.get("refund_key") or None)
            db.session.commit()
        except payments.PaymentError as error:  # (refund() turns every gateway error into one)
            db.session.rollback()
            errors = errors_from(error, ("amount", GENERAL),
                                 rename={"payment": GENERAL, "refund": GENERAL, "idempotency_key": GENERAL})
        else:
            flash(_("%(amount)s of %(reference)s is refunded.", amount=money(amount, payment.currency),
                    reference=payment.reference), "success")
            return redirect(url_for("money_admin.payments_page") + f"#payment-{payment.reference}")
    return _payments_page(errors, payment.reference, 400)


# ---------------------------------------------------------------- reconciliation

def _reconciliation_rows():
    currencies = dict(db.session.execute(sa.select(Payment.reference, Payment.currency)).all())
    purposes = dict(db.session.execute(sa.select(Payment.reference, Payment.purpose)).all())
    return [{**row, "currency": currencies.get(row["reference"], g.tenant.currency),
             "purpose": purposes.get(row["reference"], "")} for row in reconcile()]


@bp.route("/admin/money/reconciliation")
def reconciliation_page():
    rows = _reconciliation_rows()
    return render_template("money_admin/reconciliation.html", rows=rows, statuses=STATUS_LABELS,
                           mismatches=sum(1 for row in rows if not row["matches"]))


RECONCILIATION_HEADER = ("reference", "purpose", "gateway", "currency", "gateway_status", "gateway_amount",
                         "gateway_refunded", "ledger_captured", "ledger_refunded", "matches")


@bp.route("/admin/money/reconciliation.csv")
def reconciliation_csv():
    rows = []
    for row in _reconciliation_rows():
        currency = row["currency"]
        rows.append((row["reference"], row["purpose"], row["gateway"], currency, row["gateway_status"],
                     decimal_amount(row["gateway_amount"], currency), decimal_amount(row["gateway_refunded"], currency),
                     decimal_amount(row["ledger_captured"], currency), decimal_amount(row["ledger_refunded"], currency),
                     row["matches"]))
    return csv_response("reconciliation.csv", RECONCILIATION_HEADER, rows)


# ---------------------------------------------------------------- exports

DONATIONS_HEADER = ("created_at", "reference", "challenge", "donor_name", "donor_email", "anonymous", "amount",
                    "currency", "gateway", "status", "refunded", "beneficiary", "team", "participant_bib", "message")


@bp.route("/admin/money/donations.csv")
def donations_csv():
    query = (
        sa.select(Donation, Payment, Challenge.slug, Beneficiary.name, Team.name, Registration.bib)
        .join(Challenge, Challenge.id == Donation.challenge_id)
        .outerjoin(Payment, Payment.id == Donation.payment_id)
        .outerjoin(Beneficiary, Beneficiary.id == Donation.beneficiary_id)
        .outerjoin(Team, Team.id == Donation.team_id)
        .outerjoin(Registration, Registration.id == Donation.registration_id)
        .order_by(Donation.created_at, Donation.id)
    )
    rows = []
    for donation, payment, slug, beneficiary, team, bib in db.session.execute(query).yield_per(1000):
        currency = donation.currency
        rows.append((donation.created_at.isoformat(), payment.reference if payment else "", slug, donation.donor_name,
                     donation.donor_email, donation.anonymous, decimal_amount(donation.amount, currency), currency,
                     payment.gateway if payment else "", payment.status if payment else "",
                     decimal_amount(payment.refunded if payment else 0, currency), beneficiary, team, bib,
                     donation.message))
    return csv_response("donations.csv", DONATIONS_HEADER, rows)


PARTICIPANTS_HEADER = ("rank", "bib", "name", "team", "km", "score", "score_unit", "activities")


@bp.route("/admin/money/<slug>/participants.csv")
def participants_csv(slug):
    """The whole individual leaderboard, ranked as the public board is (score, who got there first, bib)."""
    challenge = _challenge(slug)
    query = (
        sa.select(ParticipantTotal, Registration.display_name, Team.name)
        .join(Registration, Registration.id == ParticipantTotal.registration_id)
        .outerjoin(Team, Team.id == ParticipantTotal.team_id)
        .where(ParticipantTotal.challenge_id == challenge.id)
        .order_by(ParticipantTotal.score.desc(), ParticipantTotal.reached_at.asc().nulls_last(), ParticipantTotal.bib)
    )
    unit = score_unit(challenge) or ""
    rows = [(rank, total.bib, name, team, f"{Decimal(total.distance_m).scaleb(-3):.3f}", total.score, unit,
             total.activities)
            for rank, (total, name, team) in enumerate(db.session.execute(query).yield_per(1000), start=1)]
    return csv_response(f"{challenge.slug}-participants.csv", PARTICIPANTS_HEADER, rows)


# ---------------------------------------------------------------- branding

def _luminance(colour):
    def channel(value):
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def contrast_ratio(first, second):
    """WCAG 2 contrast ratio of two #rrggbb colours, from 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _ratio_text(ratio):
    return format_decimal(int(ratio * 10) / 10, format="#,##0.0")  # rounded down: never flatter a colour


def _synced_from_file():
    from pathlib import Path

    return (Path(current_app.config["TENANTS_DIR"]) / g.tenant.slug / "tenant.toml").is_file()


@bp.route("/admin/branding", methods=["GET", "POST"])
def branding_page():
    tenant = g.tenant
    current = dict(tenant.branding)
    errors = FormErrors()
    if request.method == "POST":
        wanted = {**current, "primary_color": form_value("primary_color", 20).lower(),
                  "accent_color": form_value("accent_color", 20).lower(),
                  "tagline": form_value("tagline", TAGLINE_LIMIT + 1),
                  "about": (request.form.get("about") or "").strip().replace("\r\n", "\n")}
        if len(wanted["tagline"]) > TAGLINE_LIMIT:
            errors.add("tagline", _("Keep the tagline to %(limit)s characters.", limit=TAGLINE_LIMIT))
        if len(wanted["about"]) > ABOUT_LIMIT:
            errors.add("about", _("Keep the text to %(limit)s characters.", limit=format_decimal(ABOUT_LIMIT)))
        try:
            branding = BrandingSchema().load(wanted)
        except ValidationError as error:
            for line in flatten_errors(error.messages):
                field, _sep, message = line.partition(": ")
                errors.add(field if field in BRANDING_FIELDS else GENERAL,
                           _("Choose a colour, like #1a2b3c.") if field.endswith("_color") else message)
            branding = None
        if branding is not None:
            ratio = contrast_ratio("#ffffff", branding["primary_color"])
            if ratio < MIN_CONTRAST:
                errors.add("primary_color", _(
                    "White text on this colour has a contrast of %(ratio)s:1; it needs at least %(minimum)s:1 to be "
                    "readable (WCAG AA). Choose a darker primary colour.",
                    ratio=_ratio_text(ratio), minimum=format_decimal(MIN_CONTRAST)))
        if not errors:
            tenant.settings = {**tenant.settings, "branding": branding}
            audit.record("tenant.branding_changed", "tenant", tenant.id,
                         **{key: branding[key] for key in ("primary_color", "accent_color")})
            db.session.commit()
            flash(_("The branding is saved."), "success")
            return redirect(url_for("money_admin.branding_page"))
        values = wanted
    else:
        values = _branding_values(current)
    return _branding_page(errors, values)


def _branding_values(current):
    return {"primary_color": current.get("primary_color", "#1f5fbf"),
            "accent_color": current.get("accent_color", "#f28c28"),
            "tagline": current.get("tagline", ""), "about": current.get("about", "")}


def _branding_page(errors, values, logo_errors=None):
    tenant = g.tenant
    logo_errors = logo_errors or FormErrors()
    primary = values["primary_color"] if re.fullmatch(r"#[0-9a-f]{6}", values["primary_color"] or "") else None
    return render_template(
        "money_admin/branding.html", errors=errors, values=values, domains=[d.domain for d in tenant.domains],
        synced=_synced_from_file(), tenant_address=f"{tenant.slug}.{current_app.config['BASE_DOMAIN']}",
        ratio=_ratio_text(contrast_ratio("#ffffff", primary)) if primary else None,
        minimum=format_decimal(MIN_CONTRAST), logo=tenant.branding.get("logo"), logo_errors=logo_errors,
        logo_accept=logos.ACCEPT, logo_limit=format_decimal(logos.MAX_BYTES // 1024),
        logo_side=logos.MAX_SIDE,
    ), (400 if errors or logo_errors else 200)


def _logo_message(error):
    if error.code == "empty":
        return _("Choose an image file for the logo.")
    if error.code == "too_large":
        return _("The logo file is too large: at most %(limit)s KB.",
                 limit=format_decimal(error.params["limit"] // 1024))
    if error.code == "svg":
        return _("SVG logos are not accepted here (an SVG file can contain scripts). Upload a PNG, JPEG or WebP "
                 "image.")
    if error.code == "too_many_pixels":
        return _("The logo image is too big: at most 5000 by 5000 pixels.")
    return _("The logo must be a PNG, JPEG or WebP image; this file is not one.")


@bp.route("/admin/branding/logo", methods=["POST"])
def logo_upload():
    """Upload (or remove) the site's logo; it shows in every page's header at once."""
    tenant = g.tenant
    errors = FormErrors()
    if request.form.get("action") == "remove":
        if not tenant.branding.get("logo"):
            return redirect(url_for("money_admin.branding_page"))
        tenant.settings = {**tenant.settings, "branding": {**tenant.branding, "logo": None}}
        audit.record("tenant.logo_removed", "tenant", tenant.id)
        db.session.commit()
        flash(_("The logo is removed."), "success")
        return redirect(url_for("money_admin.branding_page"))
    upload = request.files.get("logo")
    if upload is None or not upload.filename:
        errors.add("logo", _("Choose an image file for the logo."))
    else:
        try:
            data, content_type, extension = logos.prepare(upload.filename, upload.stream.read(logos.MAX_BYTES + 1))
        except logos.LogoError as error:
            errors.add("logo", _logo_message(error))
    if errors:
        return _branding_page(FormErrors(), _branding_values(tenant.branding), logo_errors=errors)
    name = logos.store(data, content_type, extension, uploaded_by=g.user)
    tenant.settings = {**tenant.settings, "branding": {**tenant.branding, "logo": name}}
    audit.record("tenant.logo_uploaded", "tenant", tenant.id, content_type=content_type, bytes=len(data))
    db.session.commit()
    flash(_("The logo is saved. It shows at the top of every page."), "success")
    return redirect(url_for("money_admin.branding_page"))
