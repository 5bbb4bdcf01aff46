"""Sign-up, email confirmation, sign-in and out, password reset, the account page and API tokens."""

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from kindstride.accounts import services
from kindstride.accounts.emails import queue_account_email
from kindstride.accounts.forms import FormErrors, form_value
from kindstride.accounts.services import AccountError
from kindstride.accounts.session import login_required, sign_in, sign_out
from kindstride.db import db, utcnow
from kindstride.security import PASSWORD_RESET_LIMIT, SIGN_IN_LIMIT, SIGN_UP_LIMIT, limiter
from kindstride.web.sites import tenant_site_only

bp = Blueprint("accounts", __name__, template_folder="templates")
bp.before_request(tenant_site_only)


def _safe_next(default):
    target = request.args.get("next") or request.form.get("next") or ""
    parts = urlsplit(target)
    # Only same-site paths: never an open redirect to another host or scheme.
    if target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc:
        return target
    return default


def _send_confirmation(user):
    token = services.issue_account_token(user, services.CONFIRM_EMAIL)
    queue_account_email(user, "confirm", url_for("accounts.confirm_page", token=token, _external=True))


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(SIGN_UP_LIMIT, methods=["POST"])
def sign_up_page():
    errors = FormErrors()
    if request.method == "POST":
        try:
            user = services.sign_up(form_value("email"), form_value("name"), request.form.get("password", ""))
            _send_confirmation(user)
            db.session.commit()
            return render_template("accounts/check_email.html", email=user.email)
        except AccountError as error:
            db.session.rollback()
            errors.add(error.field, error.message)
    return render_template("accounts/sign_up.html", errors=errors), (400 if errors else 200)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm_page(token):
    # A GET only shows a button: mail scanners that follow links must not spend the token.
    if request.method == "POST":
        try:
            user = services.confirm_email(token)
            db.session.commit()
            sign_in(user)
            flash(_("Your email is confirmed. Welcome, %(name)s!", name=user.name), "success")
            return redirect(url_for("site.home"))
        except AccountError as error:
            db.session.rollback()
            return render_template("accounts/token_invalid.html", message=error.message), 400
    return render_template("accounts/confirm.html", token=token)


@bp.route("/confirm/resend", methods=["POST"])
@limiter.limit(PASSWORD_RESET_LIMIT)
def resend_confirmation():
    try:
        user = services.find_user_by_email(services.normalise_email(form_value("email")))
    except AccountError:
        user = None
    if user is not None and user.email_confirmed_at is None:
        _send_confirmation(user)
        db.session.commit()
    return render_template("accounts/check_email.html", email=form_value("email"))


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(SIGN_IN_LIMIT, methods=["POST"])
def sign_in_page():
    errors = FormErrors()
    unconfirmed = None
    if request.method == "POST":
        user = services.authenticate(form_value("email"), request.form.get("password", ""))
        if user is None:
            errors.add("password", _("Wrong email or password."))
        elif user.email_confirmed_at is None:
            unconfirmed = user.email
            errors.add("email", _("Please confirm your email first: we sent you a link."))
        else:
            sign_in(user)
            return redirect(_safe_next(url_for("site.home")))
    return render_template("accounts/sign_in.html", errors=errors, unconfirmed=unconfirmed,
                           next=_safe_next("")), (400 if errors else 200)


@bp.route("/signout", methods=["POST"])
def sign_out_page():
    sign_out()
    return redirect(url_for("site.home"))


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(PASSWORD_RESET_LIMIT, methods=["POST"])
def forgot_password_page():
    if request.method == "POST":
        try:
            user = services.find_user_by_email(services.normalise_email(form_value("email")))
        except AccountError as error:
            errors = FormErrors()
            errors.add(error.field, error.message)
            return render_template("accounts/forgot_password.html", errors=errors), 400
        if user is not None and not user.is_disabled:
            token = services.issue_account_token(user, services.RESET_PASSWORD)
            queue_account_email(user, "reset", url_for("accounts.reset_password_page", token=token, _external=True))
            db.session.commit()
        # The same answer whether or not the account exists: no probing for who has one.
        return render_template("accounts/check_email.html", email=form_value("email"))
    return render_template("accounts/forgot_password.html", errors=FormErrors())


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(PASSWORD_RESET_LIMIT, methods=["POST"])
def reset_password_page(token):
    errors = FormErrors()
    if request.method == "POST":
        try:
            user = services.reset_password(token, request.form.get("password", ""))
            # The reset link reached the mailbox, so the address is proven too.
            user.email_confirmed_at = user.email_confirmed_at or utcnow()
            db.session.commit()
            sign_in(user)
            flash(_("Your password is changed."), "success")
            return redirect(url_for("site.home"))
        except AccountError as error:
            db.session.rollback()
            if error.field == "token":
                return render_template("accounts/token_invalid.html", message=error.message), 400
            errors.add(error.field, error.message)
    return render_template("accounts/reset_password.html", token=token, errors=errors), (400 if errors else 200)


@bp.route("/account")
@login_required
def account_page():
    return render_template("accounts/account.html", tokens=services.api_tokens_of(g.user),
                           scopes=services.API_SCOPES, errors=FormErrors(), new_token=None)


@bp.route("/account/tokens", methods=["POST"])
@login_required
def create_token():
    errors = FormErrors()
    new_token = None
    try:
        days = int(form_value("days") or "0")
    except ValueError:
        days = 0
    try:
        _record, new_token = services.create_api_token(g.user, form_value("name"), request.form.getlist("scopes"),
                                                       days)
        db.session.commit()
    except AccountError as error:
        db.session.rollback()
        errors.add(error.field, error.message)
    return render_template("accounts/account.html", tokens=services.api_tokens_of(g.user),
                           scopes=services.API_SCOPES, errors=errors, new_token=new_token), (400 if errors else 200)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id):
    try:
        services.revoke_api_token(g.user, token_id)
    except AccountError:
        abort(404)
    db.session.commit()
    flash(_("The token is revoked."), "success")
    return redirect(url_for("accounts.account_page"))
