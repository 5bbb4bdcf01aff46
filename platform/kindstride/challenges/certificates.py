"""Finisher certificates: a signed code that verifies a participant's result, and the PDF that carries it.

A certificate code signs {"t": tenant id, "r": registration id} with the app's SECRET_KEY: nothing is
stored, and the verify page always shows the participant's *current* counted kilometres and rank, so a
certificate can never claim more than the leaderboard does. The PDF (A4 landscape) is drawn with a TrueType
font that has Vietnamese glyphs; its QR code (and a link over it) opens the verify page on the tenant's site.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

import qrcode
import sqlalchemy as sa
from flask import current_app
from flask_babel import format_date, format_decimal
from flask_babel import gettext as _
from itsdangerous import BadData, URLSafeSerializer
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from kindstride.challenges.models import Challenge, Registration
from kindstride.db import db
from kindstride.tenancy.models import Tenant

log = logging.getLogger(__name__)

SALT = "kindstride-certificate"
DEFAULT_PRIMARY = "#1f5fbf"  # the theme's default (web/views.py)

# TrueType faces with Vietnamese glyphs, best first: (regular, bold, Debian package that ships them).
SYSTEM_FONTS = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
     "fonts-dejavu-core"),
    ("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
     "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf", "fonts-liberation"),
    ("/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
     "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf", "fonts-liberation2"),
    ("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf", "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
     "fonts-noto-core"),
)
# Every letter a Vietnamese name may need beyond ASCII (lower and upper case are both checked).
VIETNAMESE = ("àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
              "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴĐ")
REGULAR, BOLD = "KindstrideSans", "KindstrideSans-Bold"


# --- signed codes ----------------------------------------------------------------------------------------

def _serializer():
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def certificate_code(registration) -> str:
    return _serializer().dumps({"t": registration.tenant_id, "r": registration.id})


def read_code(code, tenant_id) -> int | None:
    """The registration id a code names, or None if it is tampered with, malformed or of another tenant."""
    try:
        payload = _serializer().loads(code)
    except BadData:
        return None
    if not isinstance(payload, dict):
        return None
    tenant, registration = payload.get("t"), payload.get("r")
    if type(tenant) is not int or type(registration) is not int or tenant != tenant_id:
        return None
    return registration


# --- what a certificate says -----------------------------------------------------------------------------

class NoCountedDistance(Exception):
    """The participant has no counted kilometres yet: there is nothing to certify."""


@dataclass(frozen=True)
class Certificate:
    tenant: Tenant
    challenge: Challenge
    registration: Registration
    distance_m: int
    rank: int
    participants: int

    @property
    def km(self) -> str:
        """Counted kilometres, formatted for the tenant's locale (e.g. '12.35', or '12,35' in Vietnamese)."""
        return format_decimal(Decimal(self.distance_m).scaleb(-3), format="#,##0.##")

    @property
    def rank_text(self) -> str:
        return format_decimal(self.rank)

    @property
    def participants_text(self) -> str:
        return format_decimal(self.participants)

    @property
    def last_day(self) -> str:
        """The challenge's last counting day in its own time zone; counting_end itself is exclusive
        (a challenge ending 'on the 30th' ends at 00:00 on the 31st)."""
        end = self.challenge.counting_end.astimezone(ZoneInfo(self.challenge.timezone)) - timedelta(microseconds=1)
        return format_date(end.date(), format="long")

    @property
    def primary_color(self) -> str:
        return _hex_colour(self.tenant.branding.get("primary_color"))


def certificate_for(registration) -> Certificate:
    """The certificate of a registration as the leaderboard stands now (whatever the distance)."""
    from kindstride.leaderboards import services as boards

    challenge = db.session.scalar(sa.select(Challenge).where(Challenge.id == registration.challenge_id))
    total = boards.participant_total(registration)
    return Certificate(
        tenant=db.session.get(Tenant, registration.tenant_id), challenge=challenge, registration=registration,
        distance_m=total.distance_m if total else 0, rank=boards.rank_of(challenge, registration) or 0,
        participants=boards.challenge_totals(challenge).participants,
    )


def issuable_certificate(registration) -> Certificate:
    """A certificate for download: only for a participant with counted kilometres."""
    certificate = certificate_for(registration)
    if certificate.distance_m <= 0:
        raise NoCountedDistance(_("You have no counted kilometres in this challenge yet, so there is no "
                                  "certificate to give you. It will be ready once an activity counts."))
    return certificate


def registration_for_code(code, tenant_id) -> Registration | None:
    registration_id = read_code(code, tenant_id)
    if registration_id is None:
        return None
    registration = db.session.scalar(sa.select(Registration).where(Registration.id == registration_id))
    # The tenant filter already applies; the explicit check keeps a code from ever crossing tenants.
    if registration is None or registration.tenant_id != tenant_id:
        return None
    return registration


def download_name(certificate) -> str:
    return f"certificate-{certificate.challenge.slug}-{certificate.registration.bib}.pdf"


# --- the PDF ---------------------------------------------------------------------------------------------

def _hex_colour(value):
    value = (value or "").strip()
    if len(value) == 7 and value.startswith("#"):
        try:
            int(value[1:], 16)
            return value.lower()
        except ValueError:
            pass
    return DEFAULT_PRIMARY


def _text_on(background):
    """Black or white, whichever reads better on the background (WCAG relative luminance)."""
    def channel(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * channel(background.red) + 0.7152 * channel(background.green) + \
        0.0722 * channel(background.blue)
    return colors.black if luminance > 0.179 else colors.white


def _covers_vietnamese(font):
    glyphs = font.face.charToGlyph
    return all(ord(char) in glyphs for char in VIETNAMESE)


@cache
def certificate_fonts() -> tuple[str, str]:
    """Register (once per process) and name the regular and bold faces certificates are drawn with.

    The first installed system face with every Vietnamese letter wins. Without one, reportlab's bundled
    Vera is used (Latin only: Vietnamese letters render as boxes) and a warning names the package to install.
    """
    for regular, bold, package in SYSTEM_FONTS:
        if not Path(regular).is_file():
            continue
        try:
            face = TTFont(REGULAR, regular)
            if not _covers_vietnamese(face):
                log.warning("certificate font %s (%s) lacks Vietnamese letters; skipped", regular, package)
                continue
            bold_face = TTFont(BOLD, bold) if Path(bold).is_file() else TTFont(BOLD, regular)
        except TTFError as error:
            log.warning("certificate font %s (%s) cannot be read: %s", regular, package, error)
            continue
        pdfmetrics.registerFont(face)
        pdfmetrics.registerFont(bold_face)
        return REGULAR, BOLD
    log.warning("no TrueType font with Vietnamese letters found (install fonts-dejavu-core); certificates fall "
                "back to Vera, which draws Vietnamese letters as boxes")
    pdfmetrics.registerFont(TTFont(REGULAR, "Vera.ttf"))
    pdfmetrics.registerFont(TTFont(BOLD, "VeraBd.ttf"))
    return REGULAR, BOLD


def qr_png(url) -> bytes:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=2)
    code.add_data(url)
    code.make(fit=True)
    buffer = BytesIO()
    code.make_image(fill_color="black", back_color="white").save(buffer, format="PNG")
    return buffer.getvalue()


def _fitted(canvas, text, font, size, max_width, min_size=14):
    """Draw-size for text: shrunk until it fits the width (long names stay on one line)."""
    while size > min_size and pdfmetrics.stringWidth(text, font, size) > max_width:
        size -= 1
    canvas.setFont(font, size)
    return size


def render_certificate(certificate, verify_url, compress=True) -> bytes:
    """The certificate as a one-page A4 landscape PDF. compress=False leaves the page's text searchable."""
    regular, bold = certificate_fonts()
    width, height = landscape(A4)
    margin = 18 * mm
    buffer = BytesIO()
    canvas = Canvas(buffer, pagesize=(width, height), pageCompression=1 if compress else 0, invariant=1)
    tenant, challenge, registration = certificate.tenant, certificate.challenge, certificate.registration
    canvas.setTitle(f"{_('Certificate of completion')}: {registration.display_name} · {challenge.title}")
    canvas.setAuthor(tenant.name)
    canvas.setSubject(challenge.title)
    canvas.setCreator("kindstride")

    # The tenant's colour band with its name, and a thin frame in the same colour.
    primary = colors.HexColor(certificate.primary_color)
    band = 32 * mm
    canvas.setFillColor(primary)
    canvas.rect(0, height - band, width, band, stroke=0, fill=1)
    canvas.setFillColor(_text_on(primary))
    _fitted(canvas, tenant.name, bold, 26, width - 2 * margin)
    canvas.drawString(margin, height - band / 2 - 9, tenant.name)
    canvas.setStrokeColor(primary)
    canvas.setLineWidth(2)
    canvas.rect(margin / 2, margin / 2, width - margin, height - band - margin, stroke=1, fill=0)

    centre, text_width = width / 2, width - 2 * margin
    canvas.setFillColor(colors.HexColor("#222222"))
    _fitted(canvas, challenge.title, regular, 20, text_width)
    canvas.drawCentredString(centre, height - band - 22 * mm, challenge.title)
    canvas.setFillColor(primary if _text_on(primary) == colors.white else colors.black)
    _fitted(canvas, _("Certificate of completion"), bold, 34, text_width)
    canvas.drawCentredString(centre, height - band - 40 * mm, _("Certificate of completion"))

    canvas.setFillColor(colors.HexColor("#444444"))
    canvas.setFont(regular, 14)
    canvas.drawCentredString(centre, height - band - 54 * mm, _("This certifies that"))
    canvas.setFillColor(colors.black)
    _fitted(canvas, registration.display_name, bold, 40, text_width)
    canvas.drawCentredString(centre, height - band - 72 * mm, registration.display_name)

    canvas.setFont(regular, 16)
    lines = (
        _("bib %(bib)s", bib=registration.bib),
        _("covered %(km)s km", km=certificate.km),
        _("rank %(rank)s of %(participants)s participants", rank=certificate.rank_text,
          participants=certificate.participants_text),
    )
    for index, line in enumerate(lines):
        canvas.drawCentredString(centre, height - band - (86 + 9 * index) * mm, line)

    # Bottom left: the date; bottom right: the QR code to the verify page, linked for screen readers.
    canvas.setFont(regular, 12)
    canvas.setFillColor(colors.HexColor("#444444"))
    canvas.drawString(margin, margin + 6 * mm, _("Last day of the challenge: %(date)s", date=certificate.last_day))
    qr_size = 38 * mm
    qr_x, qr_y = width - margin - qr_size, margin + 2 * mm
    canvas.drawImage(ImageReader(BytesIO(qr_png(verify_url))), qr_x, qr_y, qr_size, qr_size)
    canvas.linkURL(verify_url, (qr_x, qr_y, qr_x + qr_size, qr_y + qr_size), relative=0)
    canvas.setFont(regular, 9)
    canvas.drawRightString(qr_x - 3 * mm, qr_y + 8 * mm, _("Scan to verify this certificate"))

    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
