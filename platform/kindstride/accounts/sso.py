"""Single sign-on with a tenant's OpenID Connect provider (authorization code + PKCE, through authlib).

Each tenant registers its own client from tenant.toml; the client secret is read from the encrypted
tenant secrets. The first sign-in creates the account; roles follow the provider's claim each time.
"""

import hashlib
import json

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, current_app, g, redirect, render_template, url_for
from flask_babel import gettext as _

from kindstride.accounts import services
from kindstride.accounts.models import User
from kindstride.accounts.session import sign_in
from kindstride.db import db, utcnow
from kindstride.tenancy.services import SSO_SECRET, load_secret
from kindstride.web.sites import tenant_site_only

bp = Blueprint("sso", __name__, template_folder="templates")
bp.before_request(tenant_site_only)


class SSORefused(Exception):
    """Sign-in through the provider is refused; the message says why, for the person trying."""


def _oauth() -> OAuth:
    return current_app.extensions["kindstride.oauth"]


def sso_client(tenant):
    """The tenant's OIDC client, or None when SSO is not configured or its secret is not set."""
    settings = tenant.sso
    if not settings:
        return None
    secret = load_secret(SSO_SECRET)
    if not secret:
        return None
    # The name changes with the settings, so an edited tenant.toml takes effect without a restart.
    digest = hashlib.sha256(json.dumps([settings, secret], sort_keys=True).encode()).hexdigest()[:12]
    name = f"tenant{tenant.id}-{digest}"
    client = _oauth().create_client(name)
    if client is None:
        client = _oauth().register(
            name,
            client_id=settings["client_id"],
            client_secret=secret,
            server_metadata_url=settings["issuer"].rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
        )
    return client


@bp.route("/sso/start")
def start():
    client = sso_client(g.tenant)
    if client is None:
        return render_template("accounts/sso_error.html",
                               message=_("Single sign-on is not set up for this site.")), 404
    return client.authorize_redirect(url_for("sso.callback", _external=True))


@bp.route("/sso/callback")
def callback():
    client = sso_client(g.tenant)
    if client is None:
        return render_template("accounts/sso_error.html",
                               message=_("Single sign-on is not set up for this site.")), 404
    try:
        token = client.authorize_access_token()
        user = account_for_claims(g.tenant.sso, token["userinfo"])
    except AuthlibBaseError as error:
        db.session.rollback()
        current_app.logger.warning("SSO sign-in refused for tenant %s: %s", g.tenant.slug, error)
        return render_template("accounts/sso_error.html",
                               message=_("The sign-in could not be verified (%(error)s). Please try again.",
                                         error=error.error)), 400
    except SSORefused as refusal:
        db.session.rollback()
        return render_template("accounts/sso_error.html", message=str(refusal)), 403
    db.session.commit()
    sign_in(user)
    return redirect(url_for("site.home"))


def account_for_claims(settings, claims) -> User:
    email = (claims.get("email") or "").lower()
    if not email or claims.get("email_verified") is False:
        raise SSORefused(_("Your sign-in provider did not give a verified email address."))
    domain = email.rpartition("@")[2]
    allowed = [d.lower() for d in settings.get("allowed_email_domains") or []]
    if allowed and domain not in allowed:
        raise SSORefused(_("Accounts from %(domain)s cannot sign in here. Use an address at %(allowed)s.",
                           domain=domain, allowed=", ".join(allowed)))
    subject = f"{settings['issuer']}|{claims['sub']}"
    user = db.session.scalar(db.select(User).where(User.sso_subject == subject))
    if user is None:
        user = services.find_user_by_email(email)
    if user is None:
        user = User(email=email, name=claims.get("name") or email, email_confirmed_at=utcnow())
        db.session.add(user)
        db.session.flush()
        services.grant_role(user, "participant")
    if user.is_disabled:
        raise SSORefused(_("This account is disabled."))
    user.sso_subject = subject
    user.email_confirmed_at = user.email_confirmed_at or utcnow()
    _sync_roles(user, settings, claims)
    return user


def _sync_roles(user, settings, claims):
    """The provider decides the roles named in role_map; roles granted here by an admin stay."""
    role_map = settings.get("role_map") or {}
    groups = claims.get(settings.get("role_claim") or "groups") or []
    if isinstance(groups, str):
        groups = [groups]
    granted = {role_map[group] for group in groups if group in role_map}
    for role in set(role_map.values()):
        if role in granted:
            services.grant_role(user, role)
        elif role != "participant":
            services.revoke_role(user, role)


def init_sso(app):
    app.extensions["kindstride.oauth"] = OAuth(app)
