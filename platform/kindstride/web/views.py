"""The tenant's home page and its theme: colours from tenant.toml, assets from its folder, or a logo uploaded
in the admin console (stored in the database)."""

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, g, render_template, send_from_directory

from kindstride.web import logos
from kindstride.web.sites import tenant_site_only

bp = Blueprint("site", __name__)
bp.before_request(tenant_site_only)

THEME_ASSETS = {".svg": "image/svg+xml", ".png": "image/png", ".css": "text/css", ".webp": "image/webp"}


@bp.route("/")
def home():
    from kindstride.challenges.views import challenge_summaries

    return render_template("site/home.html", challenges=challenge_summaries())


@bp.route("/theme.css")
def theme_css():
    branding = g.tenant.branding
    css = render_template("site/theme.css", primary=branding.get("primary_color", "#1f5fbf"),
                          accent=branding.get("accent_color", "#f28c28"))
    response = Response(css, mimetype="text/css")
    response.cache_control.max_age = 300
    return response


@bp.route("/theme/<path:filename>")
def theme_asset(filename):
    """Logo and stylesheet named in the tenant's branding, from its own folder only."""
    branding = g.tenant.branding
    if filename not in (branding.get("logo"), branding.get("stylesheet")):
        abort(404)
    if filename.startswith(logos.UPLOADED_PREFIX):
        return _uploaded_logo(filename)
    if Path(filename).suffix.lower() not in THEME_ASSETS:
        abort(404)
    folder = Path(current_app.config["TENANTS_DIR"]) / g.tenant.slug
    response = send_from_directory(folder, filename, mimetype=THEME_ASSETS[Path(filename).suffix.lower()])
    # An SVG opened directly must not run script.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


def _uploaded_logo(filename):
    asset = logos.uploaded(filename)
    if asset is None:
        abort(404)
    response = Response(asset.data, mimetype=asset.content_type)
    # The address changes with the file, so it can be kept for good.
    response.cache_control.public = True
    response.cache_control.max_age = 365 * 24 * 3600
    response.cache_control.immutable = True
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response
