"""Certificates on the tenant's site: the public page a certificate's QR code opens, and the participant's
own download."""

from flask import Blueprint, Response, abort, g, render_template, url_for
from flask_babel import gettext as _

from kindstride.accounts.session import login_required
from kindstride.challenges import certificates
from kindstride.challenges.services import get_challenge, registration_of
from kindstride.web.sites import tenant_site_only

bp = Blueprint("certificates", __name__, template_folder="templates")
bp.before_request(tenant_site_only)


def verify_url(registration) -> str:
    return url_for("certificates.verify", code=certificates.certificate_code(registration), _external=True)


def pdf_response(certificate, verify_address) -> Response:
    """The certificate as a PDF download; personal and changing with the leaderboard, so never cached."""
    pdf = certificates.render_certificate(certificate, verify_address)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{certificates.download_name(certificate)}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/certificates/<code>")
def verify(code):
    """Public: anyone holding the code sees the name, bib and current result it certifies."""
    registration = certificates.registration_for_code(code, g.tenant.id)
    if registration is None:
        message = _("This certificate code is not valid on this site. Check that the whole address was copied, "
                    "and that it is the site of the organisation that issued the certificate.")
        page, status = render_template("challenges/certificate_verify.html", certificate=None, message=message), 404
    else:
        page, status = render_template("challenges/certificate_verify.html",
                                       certificate=certificates.certificate_for(registration), message=None), 200
    response = Response(page, status=status)
    response.headers["X-Robots-Tag"] = "noindex"  # a personal result: reachable by its code, not by search
    return response


@bp.route("/challenges/<slug>/certificate.pdf")
@login_required
def download(slug):
    challenge = get_challenge(slug)
    registration = registration_of(challenge, g.user) if challenge else None
    if registration is None:
        abort(404)
    try:
        certificate = certificates.issuable_certificate(registration)
    except certificates.NoCountedDistance as error:
        return render_template("challenges/certificate_verify.html", certificate=None, message=str(error),
                               heading=_("No certificate yet")), 409
    return pdf_response(certificate, verify_url(registration))
