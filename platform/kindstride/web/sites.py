"""Which site a request is for: a tenant's (by Host), or the platform operator's (the bare base domain)."""

from flask import abort, current_app, g, redirect, render_template, request, url_for

from kindstride.tenancy.resolution import resolve_host
from kindstride.tenancy.scope import enter_scope, leave_scope


class UnknownSite(Exception):
    pass


class SuspendedSite(Exception):
    pass


def resolve_site():
    g.tenant = None
    g.platform = False
    match = resolve_host(request.host, current_app.config["BASE_DOMAIN"])
    if match is None:
        raise UnknownSite()
    if match.platform:
        g.platform = True
        return
    if not match.tenant.is_active:
        g.suspended_tenant = match.tenant
        raise SuspendedSite()
    g.tenant = match.tenant
    g.scope_token = enter_scope(match.tenant.id)


def leave_site(_exception=None):
    token = g.pop("scope_token", None)
    if token is not None:
        leave_scope(token)


def tenant_site_only():
    """before_request of blueprints that serve tenant sites."""
    if g.get("tenant") is None:
        if g.get("platform") and request.path == "/":
            return redirect(url_for("operator.tenants_page"))  # the bare domain's front page
        abort(404)


def platform_site_only():
    """before_request of blueprints that serve the operator site."""
    if not g.get("platform"):
        abort(404)


def _unknown_site(_error):
    return render_template("errors/unknown_site.html", host=request.host), 404


def _suspended_site(_error):
    return render_template("errors/suspended.html", tenant=g.suspended_tenant), 503


def init_sites(app):
    app.before_request(resolve_site)
    app.teardown_request(leave_site)
    app.register_error_handler(UnknownSite, _unknown_site)
    app.register_error_handler(SuspendedSite, _suspended_site)
