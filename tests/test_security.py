"""Security checks: expiring single-use reset tokens, no session fixation, CSRF on every state change,
security headers on every page, no secret in the logs, and an audit entry for admin and money actions.

(Sign-in throttling is tested in test_accounts.py.)
"""

import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from kindstride.accounts import services as accounts
from kindstride.accounts.models import AccountToken, User
from kindstride.audit import AuditEntry
from kindstride.db import db, utcnow
from kindstride.payments.models import Payment
from kindstride.security import csrf
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import SSO_SECRET, get_tenant, set_status, store_secret
from tests.conftest import sign_in
from tests.support.fake_vnpay import start_fake_vnpay
from tests.support.jobs import run_queued_jobs
from tests.support.oidc_provider import start_oidc_provider
from tests.support.sweep import (
    OFFLINE_GATEWAYS,
    PASSWORD,
    PLUGINS,
    SESSION_COOKIE,
    Caller,
    fill,
    host_of,
    populate,
    routes,
    send,
    session_of,
)

HEADERS = {
    "Content-Security-Policy": ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'"),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("DENY",),
    "Referrer-Policy": ("strict-origin-when-cross-origin",),
}
# POST routes that are not forms: gateways and Strava call them, proving themselves by signature or re-reading.
CSRF_EXEMPT = {"payments.webhook", "strava.webhook"}


@pytest.fixture
def world(make_app):
    app = make_app(PLUGINS=PLUGINS, RATELIMIT_ENABLED=False, GATEWAY_ENDPOINTS=OFFLINE_GATEWAYS)
    with app.app_context():
        yield app, populate(app, "alpha", "qqalphamarkqq")


# ------------------------------------------------------------------------------------------------ tokens

def test_reset_links_expire_and_are_single_use(world):
    app, w = world
    client = app.test_client().on(w.host)
    with tenant_scope(w.tenant_id):
        user = db.session.get(User, w.users["spare"])
        expired = accounts.issue_account_token(user, accounts.RESET_PASSWORD)
        fresh = accounts.issue_account_token(user, accounts.RESET_PASSWORD)
        record = db.session.scalar(sa.select(AccountToken).where(
            AccountToken.token_hash == accounts.hash_token(expired)))
        record.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    refused = client.submit(f"/password/reset/{expired}", {"password": "a brand new password"})
    assert refused.status_code == 400 and "expired" in refused.get_data(as_text=True)
    assert client.submit(f"/password/reset/{fresh}", {"password": "a brand new password"}).status_code == 302
    again = app.test_client().on(w.host).submit(f"/password/reset/{fresh}", {"password": "yet another password"})
    assert again.status_code == 400
    # A confirmation token cannot reset a password, nor the other way round.
    with tenant_scope(w.tenant_id):
        confirm = accounts.issue_account_token(db.session.get(User, w.users["spare"]), accounts.CONFIRM_EMAIL)
        db.session.commit()
    assert app.test_client().on(w.host).submit(f"/password/reset/{confirm}",
                                               {"password": "a brand new password"}).status_code == 400
    sign_in(app.test_client().on(w.host), w.emails["spare"], "a brand new password")


# ------------------------------------------------------------------------------------------------ sessions

def test_signing_in_issues_a_new_session_and_a_planted_one_is_worthless(world):
    app, w = world
    client = app.test_client().on(w.host)
    client.get("/signin")
    before = client.get_cookie(SESSION_COOKIE, domain=w.host).value
    # An attacker plants a session of their making (signed, since they got it from the site itself).
    serializer = app.session_interface.get_signing_serializer(app)
    planted_data = {**serializer.loads(before), "planted": "by-an-attacker"}
    planted = serializer.dumps(planted_data)
    client.set_cookie(SESSION_COOKIE, planted, domain=w.host)
    sign_in(client, w.emails["runner"])
    after = client.get_cookie(SESSION_COOKIE, domain=w.host).value
    assert after not in (before, planted)
    data = serializer.loads(after)
    assert "planted" not in data and data["user_id"] == w.users["runner"]
    # The cookie from before signing in is still nobody's.
    stale = app.test_client(use_cookies=False).on(w.host)
    page = stale.get("/account", headers={"Cookie": f"{SESSION_COOKIE}={before}"})
    assert page.status_code == 302 and "/signin" in page.headers["Location"]
    # Signing out ends the session: the browser's cookie is emptied.
    client.submit("/signout", {}, form_path="/")
    assert client.get("/account").status_code == 302


def test_the_session_cookie_is_http_only_same_site_and_host_only(world):
    app, w = world
    response = app.test_client().on(w.host).get("/signin")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Domain=" not in cookie


# ------------------------------------------------------------------------------------------------ CSRF

def test_every_state_changing_form_needs_its_csrf_token(world):
    """Every POST of the web blueprints (not the token-authenticated API, not the gateways' webhooks),
    sent by a signed-in admin without the token, is refused with 400 and changes nothing."""
    app, w = world
    admin = Caller("admin", w.host, *session_of(app, w.host, w.emails["admin"]))
    operator_host = host_of(None)
    values = {"slug": "run", "team_id": w.team_ids[0], "registration_id": w.registration_ids[0],
              "user_id": w.users["spare"], "token_id": w.spare_token_id, "activity_id": w.activity_ids[0],
              "pledge_id": w.pledge_ids[0], "result_id": w.result_ids["flagged"], "reference": w.payment_refs[0],
              "code": w.certificate_codes[0], "token": w.reset_token, "gateway_name": "vnpay",
              "filename": "x", "action": "suspend", "upload_id": w.upload_ids[0]}
    checked = []
    for route in routes(app):
        if route.method not in ("POST", "PUT", "PATCH", "DELETE") or route.is_api:
            continue
        exempt = route.endpoint in CSRF_EXEMPT
        # The app's own exemptions are exactly the ones written down here.
        view = app.view_functions[route.endpoint]
        assert (f"{view.__module__}.{view.__name__}" in csrf._exempt_views) == exempt, route.key
        if exempt:
            continue
        caller = Caller("admin", operator_host if route.endpoint.startswith("operator.") else w.host,
                        admin.cookie)
        values["slug"] = "alpha" if route.endpoint.startswith("operator.") else "run"
        response = send(app, caller, route.method, fill(route.rule, values),
                        form={"name": "x", "roles": ["admin"], "decision": "accepted", "comment": "x"}, csrf=False)
        assert response.status_code == 400, (route.key, response.status_code)
        assert "The form expired" in response.get_data(as_text=True)
        checked.append(route.key)
    assert len(checked) >= 25
    # The API refuses cookies as credentials: a session cookie alone is not a token.
    api = send(app, Caller("admin", w.host, admin.cookie), "POST", "/api/v1/challenges", json_body={})
    assert api.status_code in (401, 422)
    assert send(app, Caller("admin", w.host, admin.cookie), "GET", "/api/v1/me").status_code == 401


# ------------------------------------------------------------------------------------------------ headers

def test_every_html_page_carries_the_security_headers(world):
    app, w = world
    admin = Caller("admin", w.host, *session_of(app, w.host, w.emails["admin"]))
    runner = Caller("runner", w.host, *session_of(app, w.host, w.emails["runner"]))
    values = {"slug": "run", "team_id": w.team_ids[0], "registration_id": w.registration_ids[0],
              "user_id": w.users["spare"], "token_id": w.spare_token_id, "activity_id": w.activity_ids[0],
              "pledge_id": w.pledge_ids[0], "result_id": w.result_ids["flagged"], "reference": w.payment_refs[0],
              "code": w.certificate_codes[0], "token": w.reset_token, "gateway_name": "vnpay",
              "filename": "x", "action": "suspend", "upload_id": w.upload_ids[0]}
    responses = []
    for route in routes(app):
        if route.method != "GET" or route.is_api:
            continue
        for caller in (admin, runner, Caller("anonymous", w.host)):
            host = host_of(None) if route.endpoint.startswith("operator.") else w.host
            responses.append((route.key, send(app, Caller(caller.name, host, caller.cookie), "GET",
                                              fill(route.rule, values))))
    # Error pages: not found, forbidden, form expired, bad input, too large, unknown site, suspended site.
    anonymous = Caller("anonymous", w.host)
    responses += [
        ("404", send(app, anonymous, "GET", "/no/such/page")),
        ("403", send(app, runner, "GET", "/admin/members/")),
        ("400 csrf", send(app, anonymous, "POST", "/signin", form={"email": "a@b.example"}, csrf=False)),
        ("400 bad input", send(app, runner, "POST", "/activities/new", form={"title": "a\x00b"})),
        ("unknown site", send(app, Caller("x", "nowhere.kindstride.test"), "GET", "/")),
    ]
    big = app.config["MAX_CONTENT_LENGTH"] + 1
    client = app.test_client(use_cookies=False).on(w.host)
    responses.append(("413", client.post("/activities/upload", data=b"x" * big, headers={
        "Cookie": f"{SESSION_COOKIE}={runner.cookie}", "Content-Type": "application/x-www-form-urlencoded"})))
    set_status("alpha", "suspended")
    responses.append(("503 suspended", send(app, anonymous, "GET", "/")))
    set_status("alpha", "active")
    html = [(key, r) for key, r in responses if r.mimetype == "text/html"]
    assert len(html) >= 60
    missing = [f"{key} ({r.status_code}): {name}" for key, r in html for name, parts in HEADERS.items()
               if not all(part in r.headers.get(name, "") for part in parts)]
    assert not missing, "\n".join(missing)
    statuses = {r.status_code for _key, r in html}
    assert {200, 400, 403, 404, 413, 503} <= statuses, statuses
    # Nothing is ever served as HTML that came from a user's file, and JSON is never sniffed as HTML.
    for key, r in responses:
        assert r.headers.get("X-Content-Type-Options") == "nosniff", key


# ------------------------------------------------------------------------------------------------ logs

def test_secrets_are_never_logged(make_app, caplog):
    """An SSO sign-in (good and tampered), a VNPay donation (paid, notified, a forged notification, refunded),
    password sign-ins and resets, API calls with good and bad tokens: no secret appears in any log record."""
    vnpay = start_fake_vnpay()
    provider = start_oidc_provider(client_id="kindstride-alpha", client_secret="idp-client-secret-4242")
    provider.add_redirect_uri("http://alpha.kindstride.test/sso/callback")
    app = make_app(PLUGINS=PLUGINS, RATELIMIT_ENABLED=False, GATEWAY_ENDPOINTS={
        "vnpay.payment_url": vnpay.payment_url, "vnpay.api_url": vnpay.api_url})
    caplog.set_level(logging.DEBUG)
    try:
        with app.app_context():
            w = populate(app, "alpha", "qqalphamarkqq", currency="VND", vnpay=(vnpay.tmn_code, vnpay.hash_secret))
            tenant = get_tenant("alpha")
            tenant.settings = {**tenant.settings, "sso": {
                "issuer": provider.issuer, "client_id": "kindstride-alpha", "client_secret_env": "X",
                "allowed_email_domains": [], "role_claim": "groups", "role_map": {}, "label": None}}
            with tenant_scope(tenant.id):
                store_secret(SSO_SECRET, "idp-client-secret-4242")
            db.session.commit()
            client = app.test_client().on(w.host)
            # SSO, good and tampered
            provider.set_user("minh@alpha.example", name="Minh")
            for tamper in (False, True):
                start = client.get("/sso/start")
                back = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
                callback = urlsplit(back.headers["Location"])
                query = callback.query.replace("state=", "state=x") if tamper else callback.query
                client.get(f"{callback.path}?{query}")
            # passwords: right, wrong; a reset
            sign_in(app.test_client().on(w.host), w.emails["runner"])
            app.test_client().on(w.host).submit("/signin", {"email": w.emails["runner"], "password": "wrong pass"})
            app.test_client().on(w.host).submit("/password/forgot", {"email": w.emails["spare"]})
            app.test_client().on(w.host).submit(f"/password/reset/{w.reset_token}", {"password": "a new password!"})
            run_queued_jobs(app)
            # the API, with a good and an unknown token
            api = app.test_client().on(w.host)
            api.get("/api/v1/me", headers={"Authorization": f"Bearer {w.tokens['admin']}"})
            api.get("/api/v1/me", headers={"Authorization": "Bearer ks_not-a-real-token-at-all"})
            # a VNPay donation, paid, notified twice, a forged notification, then refunded
            started = api.post("/api/v1/challenges/run/donations", json={
                "amount": 120_000, "currency": "VND", "gateway": "vnpay", "donor_name": "Mai",
                "donor_email": "mai@example.com", "idempotency_key": "secrets-log-0001"})
            assert started.status_code == 201, started.get_data(as_text=True)
            requests.get(started.get_json()["redirect_url"], allow_redirects=False, timeout=10)
            with tenant_scope(w.tenant_id):
                payment = db.session.scalar(sa.select(Payment).where(
                    Payment.reference == started.get_json()["reference"]))
                txn_ref = payment.gateway_ref
                db.session.commit()
            for tamper in (False, False, True):
                api.get("/payments/vnpay/webhook", query_string=vnpay.ipn_params(txn_ref, tamper=tamper))
            refunded = api.post(f"/api/v1/payments/{started.get_json()['reference']}/refunds", json={"amount": 20_000},
                                headers={"Authorization": f"Bearer {w.tokens['admin']}"})
            assert refunded.status_code == 201, refunded.get_data(as_text=True)
            run_queued_jobs(app)
            session_cookie = client.get_cookie(SESSION_COOKIE, domain=w.host)
            secrets = {
                "SSO client secret": "idp-client-secret-4242", "VNPay hash secret": vnpay.hash_secret,
                "password": PASSWORD, "new password": "a new password!", "reset token": w.reset_token,
                "confirm token": w.confirm_token, "API token": w.tokens["admin"], "API token 2": w.tokens["runner"],
                "secret key": app.config["SECRET_KEY"], "secrets key": app.config["SECRETS_KEY"],
                "session cookie": session_cookie.value if session_cookie else "no-cookie-here",
            }
    finally:
        vnpay.stop()
        provider.stop()
    logged = "\n".join(f"{record.name} {record.getMessage()} {record.exc_text or ''}" for record in caplog.records)
    assert len(caplog.records) > 5  # the flows did log (webhooks, SSO, mail): the check below means something
    for label, value in secrets.items():
        assert value not in logged, f"the {label} is in the logs"
    # The reset link itself (its token) is never logged either, nor any Bearer header.
    assert not re.search(r"Bearer ks_", logged)


# ------------------------------------------------------------------------------------------------ audit

def test_admin_and_money_actions_leave_an_audit_entry(make_app):
    vnpay = start_fake_vnpay()
    app = make_app(PLUGINS=PLUGINS, RATELIMIT_ENABLED=False, GATEWAY_ENDPOINTS={
        "vnpay.payment_url": vnpay.payment_url, "vnpay.api_url": vnpay.api_url})
    try:
        with app.app_context():
            w = populate(app, "alpha", "qqalphamarkqq", currency="VND", vnpay=(vnpay.tmn_code, vnpay.hash_secret))
            admin = app.test_client().on(w.host)
            sign_in(admin, w.emails["admin"])
            moderator = app.test_client().on(w.host)
            sign_in(moderator, w.emails["moderator"])
            with tenant_scope(w.tenant_id):
                before = db.session.scalar(sa.select(sa.func.max(AuditEntry.id))) or 0
                db.session.commit()
            # a ruleset change through the editor
            page = admin.get("/admin/challenges/run/ruleset")
            current = re.search(r'<textarea[^>]*name="ruleset_json"[^>]*>([^<]*)<', page.get_data(as_text=True))
            import html

            saved = admin.submit("/admin/challenges/run/ruleset", {
                "mode": "json", "action": "save", "ruleset_json": html.unescape(current.group(1)), "note": "audit"})
            assert saved.status_code == 302, saved.get_data(as_text=True)[:300]
            # moderation: a flagged activity decided
            decided = moderator.submit(f"/admin/challenges/run/review/{w.result_ids['flagged']}",
                                       {"decision": "rejected", "comment": "no GPS splits"},
                                       form_path="/admin/challenges/run/review")
            assert decided.status_code == 302
            # roles changed
            changed = admin.submit(f"/admin/members/{w.users['spare']}/roles", {"roles": ["participant", "sponsor"]},
                                   form_path="/admin/members/")
            assert changed.status_code == 302
            # a donation paid, then refunded
            api = app.test_client().on(w.host)
            started = api.post("/api/v1/challenges/run/donations", json={
                "amount": 80_000, "currency": "VND", "gateway": "vnpay", "donor_name": "Mai",
                "donor_email": "mai@example.com", "idempotency_key": "audit-0001"}).get_json()
            requests.get(started["redirect_url"], allow_redirects=False, timeout=10)
            with tenant_scope(w.tenant_id):
                txn_ref = db.session.scalar(sa.select(Payment.gateway_ref).where(
                    Payment.reference == started["reference"]))
                db.session.commit()
            assert api.get("/payments/vnpay/webhook", query_string=vnpay.ipn_params(txn_ref)).get_json()[
                "RspCode"] == "00"
            refund = api.post(f"/api/v1/payments/{started['reference']}/refunds", json={"amount": 30_000},
                              headers={"Authorization": f"Bearer {w.tokens['admin']}"})
            assert refund.status_code == 201, refund.get_data(as_text=True)
            with tenant_scope(w.tenant_id):
                entries = db.session.execute(sa.select(AuditEntry.action, AuditEntry.actor_id, AuditEntry.details)
                                             .where(AuditEntry.id > before)).all()
                db.session.commit()
    finally:
        vnpay.stop()
    actions = {action: (actor, details) for action, actor, details in entries}
    assert actions["ruleset.changed"][0] == w.users["admin"]
    assert actions["result.decided"][0] == w.users["moderator"]
    assert actions["result.decided"][1]["comment"] == "no GPS splits"
    assert actions["roles.changed"] == (w.users["admin"], {"granted": ["sponsor"], "revoked": []})
    assert actions["payment.succeeded"][1]["amount"] == 80_000
    assert actions["payment.refunded"][0] == w.users["admin"] and actions["payment.refunded"][1]["amount"] == 30_000


def test_api_tokens_are_stored_hashed_and_scoped(world):
    app, w = world
    from kindstride.accounts.models import ApiToken

    with tenant_scope(w.tenant_id):
        stored = db.session.scalars(sa.select(ApiToken.token_hash)).all()
        db.session.commit()
    assert all(token not in stored for token in w.tokens.values())
    runner = Caller("runner", w.host, bearer=w.tokens["runner"])
    assert send(app, runner, "GET", "/api/v1/reconciliation").status_code == 403
    assert send(app, runner, "GET", "/api/v1/me").status_code == 200
