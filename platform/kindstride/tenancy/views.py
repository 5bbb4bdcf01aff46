"""The platform operator's site on the bare base domain: sign in, list, create, suspend, re-activate."""

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from kindstride.accounts.forms import FormErrors, form_value
from kindstride.accounts.services import authenticate_operator
from kindstride.accounts.session import operator_required, sign_in_operator, sign_out
from kindstride.db import db
from kindstride.security import SIGN_IN_LIMIT, limiter
from kindstride.tenancy import services
from kindstride.tenancy.models import ACTIVE, SUSPENDED, Tenant
from kindstride.web.sites import platform_site_only

bp = Blueprint("operator", __name__, template_folder="templates", url_prefix="/operator")
bp.before_request(platform_site_only)


@bp.route("/", methods=["GET"])
@operator_required
def tenants_page(errors=None, status=200):
    tenants = db.session.scalars(sa.select(Tenant).order_by(Tenant.slug)).all()
    return render_template("operator/tenants.html", tenants=tenants, errors=errors or FormErrors()), status


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(SIGN_IN_LIMIT, methods=["POST"])
def sign_in_page():
    errors = FormErrors()
    if request.method == "POST":
        operator = authenticate_operator(form_value("email"), request.form.get("password", ""))
        if operator is None:
            errors.add("password", _("Wrong email or password."))
        else:
            sign_in_operator(operator)
            return redirect(url_for("operator.tenants_page"))
    return render_template("operator/sign_in.html", errors=errors), (400 if errors else 200)


@bp.route("/signout", methods=["POST"])
def sign_out_page():
    sign_out()
    return redirect(url_for("operator.sign_in_page"))


@bp.route("/tenants", methods=["POST"])
@operator_required
def create_tenant():
    try:
        tenant = services.create_tenant(form_value("slug").lower(), form_value("name"), form_value("locale") or "en",
                                        form_value("currency").upper() or "USD", form_value("timezone") or "UTC")
    except services.TenantConfigError as error:
        db.session.rollback()
        errors = FormErrors()
        field, _sep, message = str(error).partition(": ")
        errors.add(field, message)
        return tenants_page(errors=errors, status=400)
    flash(_("Tenant %(slug)s created.", slug=tenant.slug), "success")
    return redirect(url_for("operator.tenants_page"))


@bp.route("/tenants/<slug>/<any(suspend, activate):action>", methods=["POST"])
@operator_required
def change_status(slug, action):
    try:
        tenant = services.set_status(slug, SUSPENDED if action == "suspend" else ACTIVE)
    except services.TenantConfigError:
        return render_template("errors/not_found.html"), 404
    flash(_("%(name)s is now %(status)s.", name=tenant.name, status=tenant.status), "success")
    return redirect(url_for("operator.tenants_page"))
