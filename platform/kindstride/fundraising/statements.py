"""A sponsor's pledge statement (PDF): what the pledge accrued on the valid kilometres in its scope, what was
paid, and what is outstanding, with the tenant's details. Available at any time; marked final once the
challenge's counting period has ended. Every amount is a ledger sum."""

import io

import sqlalchemy as sa
from flask import Response, g
from flask_babel import gettext as _
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfgen import canvas

from kindstride.challenges.certificates import certificate_fonts
from kindstride.challenges.models import Challenge, Division, Team
from kindstride.challenges.views import km, local_date, local_datetime
from kindstride.db import db, utcnow
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Beneficiary
from kindstride.fundraising.receipts import money
from kindstride.ledger.models import LedgerEntry, LedgerTransaction
from kindstride.ledger.services import balance
from kindstride.plugins import plugin_host
from kindstride.rules.labels import plugin_text

MONEY_PARAMS = frozenset({"rate_per_km", "amount", "cap"})  # the built-in rules' amounts, in minor units
MARGIN, LABEL_WIDTH = 50, 150


def pledge_figures(pledge):
    """Accrued, paid and outstanding on a pledge, in minor units (ledger sums)."""
    accrued = fundraising.accrued(pledge)
    outstanding = balance(fundraising.receivable_account(pledge), pledge.currency)
    return {"accrued": accrued, "paid": accrued - outstanding, "outstanding": outstanding}


def payments_recorded(pledge):
    """The sponsor's payments the tenant recorded against a pledge: (date, reference, amount), oldest first."""
    prefix = f"pledge:{pledge.id}:paid:"
    rows = db.session.execute(
        sa.select(LedgerTransaction.created_at, LedgerTransaction.reference, LedgerEntry.amount)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.reference.startswith(prefix, autoescape=True),
               LedgerEntry.account == fundraising.receivable_account(pledge))
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)).all()
    return [(created_at, reference.removeprefix(prefix), -amount) for created_at, reference, amount in rows]


def scope_distance_m(pledge):
    """The counted metres a pledge is computed on (its team, its division, or the whole challenge): the same
    figure accrual uses."""
    return int(fundraising._scope_distance(pledge))


def _scope(pledge):
    if pledge.team_id:
        team = db.session.get(Team, pledge.team_id)
        return _("Team %(name)s", name=team.name if team else pledge.team_id)
    if pledge.division_id:
        division = db.session.get(Division, pledge.division_id)
        return _("Division %(name)s", name=division.name if division else pledge.division_id)
    return _("The whole challenge")


def _params_text(pledge):
    parts = []
    for name, value in sorted((pledge.params or {}).items()):
        if value is None:
            continue
        if name in MONEY_PARAMS and isinstance(value, int) and not isinstance(value, bool):
            value = money(value, pledge.currency)
        parts.append(f"{name}: {value}")
    return ", ".join(parts) or "-"


def statement_lines(pledge):
    """What the statement says, as (heading, [(label, value)]) sections; also what the tests read."""
    challenge = db.session.get(Challenge, pledge.challenge_id)
    tenant = g.tenant
    rule = plugin_host().strategies("register_pledge_rules", tenant).get(pledge.rule)
    beneficiary = db.session.get(Beneficiary, pledge.beneficiary_id) if pledge.beneficiary_id else None
    figures = pledge_figures(pledge)
    final = utcnow() >= challenge.counting_end
    recorded = payments_recorded(pledge)
    pledge_section = [
        (_("Sponsor"), pledge.sponsor_name),
        (_("Challenge"), challenge.title),
        (_("Activities count"), _("%(start)s to %(end)s",
                                  start=local_date(challenge.counting_start, challenge.timezone),
                                  end=local_date(challenge.counting_end, challenge.timezone))),
        (_("Pledge rule"), plugin_text(getattr(rule, "label", pledge.rule))),
        (_("Terms"), _params_text(pledge)),
        (_("Scope"), _scope(pledge)),
        (_("For"), beneficiary.name if beneficiary else _("The challenge's general fund")),
        (_("Pledged on"), local_date(pledge.created_at)),
    ]
    money_section = [
        (_("Valid km in scope"), km(scope_distance_m(pledge))),
        (_("Accrued"), money(figures["accrued"], pledge.currency)),
    ]
    money_section += [(_("Payment %(reference)s, %(date)s", reference=reference, date=local_date(created_at)),
                       money(amount, pledge.currency)) for created_at, reference, amount in recorded]
    money_section += [
        (_("Paid"), money(figures["paid"], pledge.currency)),
        (_("Outstanding"), money(figures["outstanding"], pledge.currency)),
    ]
    if final:
        status = _("Final statement: the challenge stopped counting on %(end)s.",
                   end=local_datetime(challenge.counting_end, challenge.timezone))
    else:
        status = _("Interim statement: the challenge counts activities until %(end)s, so the accrued amount can "
                   "still grow.", end=local_datetime(challenge.counting_end, challenge.timezone))
    return {
        "tenant": tenant.name, "contact": tenant.settings.get("contact_email") or "",
        "title": _("Final pledge statement") if final else _("Interim pledge statement"), "final": final,
        "number": f"{tenant.slug}-P{pledge.id}", "date": local_datetime(utcnow()), "status": status,
        "sections": [(_("Pledge"), pledge_section), (_("Amounts"), money_section)],
    }


def render_statement(content) -> bytes:
    regular, bold = certificate_fonts()
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    page.setTitle(content["title"])
    page.setAuthor(content["tenant"])
    width, height = A4
    value_width = width - 2 * MARGIN - LABEL_WIDTH
    y = height - 60

    def new_page_if_needed(needed):
        nonlocal y
        if y - needed < 60:
            page.showPage()  # a new page starts with reportlab's default font: set ours again
            page.setFont(regular, 11)
            y = height - 60

    page.setFont(bold, 16)
    page.drawString(MARGIN, y, content["tenant"])
    page.setFont(regular, 10)
    if content["contact"]:
        y -= 16
        page.drawString(MARGIN, y, content["contact"])
    y -= 40
    page.setFont(bold, 18)
    page.drawString(MARGIN, y, content["title"])
    page.setFont(regular, 10)
    y -= 18
    page.drawString(MARGIN, y, _("Statement number: %(number)s · Date: %(date)s", number=content["number"],
                                 date=content["date"]))
    for heading, lines in content["sections"]:
        y -= 30
        new_page_if_needed(40)
        page.setFont(bold, 13)
        page.drawString(MARGIN, y, heading)
        page.setFont(regular, 11)
        for label, value in lines:
            label_lines = simpleSplit(f"{label}:", regular, 11, LABEL_WIDTH - 10)
            value_lines = simpleSplit(str(value), regular, 11, value_width)
            rows = max(len(label_lines), len(value_lines), 1)
            new_page_if_needed(16 * rows + 6)
            y -= 18
            for index in range(rows):
                if index < len(label_lines):
                    page.drawString(MARGIN, y - 14 * index, label_lines[index])
                if index < len(value_lines):
                    page.drawString(MARGIN + LABEL_WIDTH, y - 14 * index, value_lines[index])
            y -= 14 * (rows - 1)
    y -= 34
    new_page_if_needed(40)
    page.setFont(bold if content["final"] else regular, 11)
    for line in simpleSplit(content["status"], regular, 11, width - 2 * MARGIN):
        page.drawString(MARGIN, y, line)
        y -= 15
    page.showPage()
    page.save()
    return buffer.getvalue()


def statement_response(pledge) -> Response:
    pdf = render_statement(statement_lines(pledge))
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="pledge-statement-{pledge.id}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
