"""Strava on a tenant's site (connect, callback, disconnect), and Strava's webhook for the whole platform."""

import hmac

import requests
from authlib.common.errors import AuthlibBaseError
from flask import Blueprint, abort, current_app, flash, g, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from kindstride.accounts.session import login_required
from kindstride.activities import strava
from kindstride.db import db
from kindstride.security import csrf
from kindstride.web.sites import tenant_site_only

bp = Blueprint("strava", __name__)
WEBHOOK_ENDPOINTS = ("strava.webhook_handshake", "strava.webhook")


@bp.before_request
def _tenant_sites_but_the_webhook():
    # Strava has one webhook subscription per app, so the webhook is the platform's: it answers on any host
    # (normally the bare base domain) and finds the tenant from the athlete. Everything else is a tenant's.
    if request.endpoint not in WEBHOOK_ENDPOINTS:
        return tenant_site_only()
    return None


def _back_to_account():
    return redirect(url_for("accounts.account_page"))


@bp.route("/strava/connect")
@login_required
def connect():
    if not strava.configured():
        abort(404)
    return strava.oauth_client().authorize_redirect(url_for("strava.callback", _external=True),
                                                    approval_prompt="auto")


@bp.route("/strava/callback")
@login_required
def callback():
    if not strava.configured():
        abort(404)
    if request.args.get("error"):  # the person declined on Strava's page
        flash(_("Strava was not connected."), "info")
        return _back_to_account()
    try:
        token = strava.oauth_client().authorize_access_token(timeout=strava.HTTP_TIMEOUT)
        strava.connect(g.user, token, request.args.get("scope", ""))
        db.session.commit()
    except strava.StravaConnectError as refusal:
        db.session.rollback()
        flash(str(refusal), "error")
    except (AuthlibBaseError, requests.RequestException, ValueError, IntegrityError) as error:
        db.session.rollback()
        current_app.logger.warning("Strava connection refused for tenant %s: %s", g.tenant.slug, error)
        flash(_("Strava could not confirm the connection. Please try again."), "error")
    else:
        flash(_("Strava is connected: your new activities arrive by themselves."), "success")
    return _back_to_account()


@bp.route("/strava/disconnect", methods=["POST"])
@login_required
def disconnect():
    connection = strava.connection_of(g.user)
    if connection is not None and connection.is_active:
        strava.disconnect(connection)
        db.session.commit()
        flash(_("Strava is disconnected."), "success")
    return _back_to_account()


@bp.route("/strava/webhook", methods=["GET"])
def webhook_handshake():
    """Strava's subscription check: echo hub.challenge when hub.verify_token is ours."""
    expected = current_app.config.get("STRAVA_VERIFY_TOKEN") or ""
    given = request.args.get("hub.verify_token", "")
    if (request.args.get("hub.mode") != "subscribe" or not expected
            or not hmac.compare_digest(given.encode(), expected.encode())):
        return jsonify(error="verify token mismatch"), 403
    return jsonify({"hub.challenge": request.args.get("hub.challenge", "")})


@bp.route("/strava/webhook", methods=["POST"])
@csrf.exempt
def webhook():
    """One event: routed to its tenant and queued, answered at once (Strava waits 2 seconds at most). The answer
    is the same whatever became of the event, so the endpoint never tells anyone which athletes are connected."""
    event = strava.parse_event(request.get_json(silent=True))
    if event is None:
        return jsonify(error="not a Strava webhook event"), 400
    strava.route_event(event)
    return jsonify(status="received")
