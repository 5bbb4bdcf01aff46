"""Donation receipts: an email with a PDF carrying the tenant's details (a tenant job)."""

import io
from decimal import Decimal

from flask import g
from flask_babel import force_locale, format_currency, format_datetime, gettext
from reportlab.lib.pagesizes import A5
from reportlab.pdfgen import canvas

from kindstride.challenges.certificates import certificate_fonts
from kindstride.challenges.models import Challenge
from kindstride.db import db
from kindstride.fundraising.models import Donation
from kindstride.mail import send_mail
from kindstride.payments.models import Payment
from kindstride.tenancy.models import Tenant


def money(amount, currency):
    """An amount in minor units, formatted for the current locale (VND has no minor unit)."""
    from babel.numbers import get_currency_precision

    return format_currency(Decimal(int(amount)).scaleb(-get_currency_precision(currency)), currency)


def receipt_pdf(donation, payment, challenge, tenant) -> bytes:
    regular, bold = certificate_fonts()
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A5)
    width, height = A5
    y = height - 60
    page.setFont(bold, 16)
    page.drawString(40, y, tenant.name)
    page.setFont(regular, 10)
    if tenant.settings.get("contact_email"):
        page.drawString(40, y - 16, tenant.settings["contact_email"])
    y -= 60
    page.setFont(bold, 14)
    page.drawString(40, y, gettext("Donation receipt"))
    page.setFont(regular, 11)
    lines = [
        (gettext("Receipt number"), payment.reference),
        (gettext("Date"), format_datetime(payment.updated_at, "medium")),
        (gettext("Donor"), donation.donor_name),
        (gettext("Amount"), money(donation.amount, donation.currency)),
        (gettext("For"), challenge.title),
        (gettext("Paid by"), payment.gateway),
    ]
    for label, value in lines:
        y -= 22
        page.drawString(40, y, f"{label}:")
        page.drawString(150, y, str(value))
    y -= 40
    page.drawString(40, y, gettext("Thank you for your gift."))
    page.showPage()
    page.save()
    return buffer.getvalue()


def send_donation_receipt(donation_id):
    donation = db.session.get(Donation, donation_id)
    payment = db.session.get(Payment, donation.payment_id)
    challenge = db.session.get(Challenge, donation.challenge_id)
    tenant = db.session.get(Tenant, donation.tenant_id)
    g.tenant = tenant
    with force_locale(tenant.locale):
        pdf = receipt_pdf(donation, payment, challenge, tenant)
        subject = gettext("Your donation receipt from %(site)s", site=tenant.name)
        body = gettext("Dear %(name)s,\n\nThank you for donating %(amount)s to %(challenge)s. "
                       "Your receipt is attached.\n\n%(site)s",
                       name=donation.donor_name, amount=money(donation.amount, donation.currency),
                       challenge=challenge.title, site=tenant.name)
    send_mail(donation.donor_email, subject, body, reply_to=tenant.settings.get("contact_email"),
              attachments=[(f"receipt-{payment.reference}.pdf", pdf, "application/pdf")])
