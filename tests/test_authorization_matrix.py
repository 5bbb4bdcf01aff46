"""Authorization matrix: every route of the URL map, by every role, against the access written down here.

Roles: anonymous; participant, sponsor, moderator and admin of tenant A (a session cookie for pages, an API token
with every scope the role may hold for the API); the platform operator (signed in on the operator site); and
another tenant's admin (tenant B's admin presenting B's cookie and token on A's site).

A request is denied when it answers 401 or 403, redirects to a sign-in page, or is refused for want of a CSRF
token of a session valid on this site (another tenant's cookie is dropped, and its CSRF token with it); anything
else (2xx, a 4xx about the input, a 404 for an object the caller may not see) means the role got past the access
check. Requests are
built so that the access check decides before any validation: real objects of tenant A, forms with the caller's
CSRF token, and API bodies that pass the schema (flask-smorest validates the body before the view runs).

A route missing from MATRIX fails the test (a new route needs its access written down), and so does an entry
naming a route that no longer exists.
"""

import io
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from kindstride.accounts.services import create_operator
from kindstride.db import db
from kindstride.tenancy.services import create_tenant
from tests.support.sweep import (
    NOW,
    OFFLINE_GATEWAYS,
    PLUGINS,
    Caller,
    fill,
    host_of,
    populate,
    print_table,
    routes,
    send,
    session_of,
)

EVERYONE = frozenset({"anonymous", "participant", "sponsor", "moderator", "admin", "operator", "other_admin"})
# A form anyone may post, except with another tenant's session cookie: this site drops that session, and the
# CSRF token in it, so the post is refused until a page of this site is loaded (which makes it anonymous).
PUBLIC_FORM = EVERYONE - {"other_admin"}
MEMBERS = frozenset({"participant", "sponsor", "moderator", "admin"})
STAFF = frozenset({"moderator", "admin"})
SPONSORS = frozenset({"sponsor", "admin"})
ADMIN = frozenset({"admin"})
OPERATOR = frozenset({"operator"})

# route ("METHOD rule" as in the URL map) -> the roles allowed through
MATRIX = {
    # the tenant's site: public pages
    "GET /": EVERYONE,
    "GET /theme.css": EVERYONE,
    "GET /theme/<path:filename>": EVERYONE,
    "GET /challenges/<slug>": EVERYONE,
    "GET /challenges/<slug>/leaderboard": EVERYONE,
    "GET /challenges/<slug>/teams": EVERYONE,
    "GET /challenges/<slug>/teams/<int:team_id>": EVERYONE,
    "GET /challenges/<slug>/participants/<int:registration_id>": EVERYONE,
    "GET /challenges/<slug>/donate": EVERYONE,
    "POST /challenges/<slug>/donate": PUBLIC_FORM,
    "GET /donations/<reference>": EVERYONE,
    "GET /donations/<reference>/card": EVERYONE,
    "GET /certificates/<code>": EVERYONE,
    # accounts
    "GET /signup": EVERYONE,
    "POST /signup": PUBLIC_FORM,
    "GET /signin": EVERYONE,
    "POST /signin": PUBLIC_FORM,
    "POST /signout": PUBLIC_FORM,
    "GET /confirm/<token>": EVERYONE,
    "POST /confirm/<token>": PUBLIC_FORM,
    "POST /confirm/resend": PUBLIC_FORM,
    "GET /password/forgot": EVERYONE,
    "POST /password/forgot": PUBLIC_FORM,
    "GET /password/reset/<token>": EVERYONE,
    "POST /password/reset/<token>": PUBLIC_FORM,
    "GET /sso/start": EVERYONE,
    "GET /sso/callback": EVERYONE,
    "GET /account": MEMBERS,
    "POST /account/tokens": MEMBERS,
    "POST /account/tokens/<int:token_id>/revoke": MEMBERS,
    # a participant's own things
    "GET /activities": MEMBERS,
    "GET /activities/new": MEMBERS,
    "POST /activities/new": MEMBERS,
    "GET /activities/upload": MEMBERS,
    "POST /activities/upload": MEMBERS,
    # a long upload's progress page and its JSON: the uploader's only, 404 for the other members
    "GET /activities/uploads/<upload_id>": MEMBERS,
    "GET /activities/uploads/<upload_id>/progress": MEMBERS,
    "POST /results/<int:result_id>/appeal": MEMBERS,
    "GET /challenges/<slug>/register": MEMBERS,
    "POST /challenges/<slug>/register": MEMBERS,
    "GET /challenges/<slug>/team": MEMBERS,
    "POST /challenges/<slug>/team": MEMBERS,
    "GET /challenges/<slug>/my-page": MEMBERS,
    "POST /challenges/<slug>/my-page": MEMBERS,
    "GET /challenges/<slug>/certificate.pdf": MEMBERS,
    "GET /strava/connect": MEMBERS,
    "GET /strava/callback": MEMBERS,
    "POST /strava/disconnect": MEMBERS,
    # sponsors
    "GET /challenges/<slug>/pledges": SPONSORS,
    "POST /challenges/<slug>/pledges": SPONSORS,
    "GET /sponsor/pledges": SPONSORS,
    "GET /sponsor/pledges/<int:pledge_id>/statement.pdf": SPONSORS,
    # moderators and admins
    "GET /admin/challenges/": STAFF,
    "GET /admin/challenges/<slug>/review": STAFF,
    "POST /admin/challenges/<slug>/review/<int:result_id>": STAFF,
    "GET /admin/challenges/new": ADMIN,
    "POST /admin/challenges/new": ADMIN,
    "GET /admin/challenges/<slug>/ruleset": ADMIN,
    "POST /admin/challenges/<slug>/ruleset": ADMIN,
    "GET /admin/challenges/<slug>/ruleset/progress": ADMIN,
    "GET /admin/members/": ADMIN,
    "POST /admin/members/<int:user_id>/roles": ADMIN,
    "GET /admin/branding": ADMIN,
    "POST /admin/branding": ADMIN,
    "POST /admin/branding/logo": ADMIN,
    "GET /admin/money/": ADMIN,
    "GET /admin/money/<slug>/beneficiaries": ADMIN,
    "POST /admin/money/<slug>/beneficiaries": ADMIN,
    "GET /admin/money/<slug>/pledges": ADMIN,
    "GET /admin/money/<slug>/participants.csv": ADMIN,
    "POST /admin/money/pledges/<int:pledge_id>/payments": ADMIN,
    "GET /admin/money/payments": ADMIN,
    "POST /admin/money/payments/<reference>/refund": ADMIN,
    "GET /admin/money/reconciliation": ADMIN,
    "GET /admin/money/reconciliation.csv": ADMIN,
    "GET /admin/money/donations.csv": ADMIN,
    # gateways and Strava call these; they prove who they are by signature, verify token or by re-reading
    "GET /payments/<gateway_name>/webhook": EVERYONE,
    "POST /payments/<gateway_name>/webhook": EVERYONE,
    "GET /payments/<gateway_name>/return": EVERYONE,
    "GET /strava/webhook": EVERYONE,
    "POST /strava/webhook": EVERYONE,
    # the operator site (bare base domain)
    "GET /operator/signin": EVERYONE,
    "POST /operator/signin": EVERYONE,
    "POST /operator/signout": EVERYONE,
    "GET /operator/": OPERATOR,
    "POST /operator/tenants": OPERATOR,
    "POST /operator/tenants/<slug>/<any(suspend, activate):action>": OPERATOR,
    # the REST API
    "GET /api/v1/openapi.json": EVERYONE,
    "GET /api/v1/tenant": EVERYONE,
    "GET /api/v1/presets": EVERYONE,
    "GET /api/v1/challenges": EVERYONE,
    "POST /api/v1/challenges": ADMIN,
    "GET /api/v1/challenges/<slug>": EVERYONE,
    "GET /api/v1/challenges/<slug>/divisions": EVERYONE,
    "GET /api/v1/challenges/<slug>/teams": EVERYONE,
    "GET /api/v1/challenges/<slug>/ruleset": EVERYONE,
    "PUT /api/v1/challenges/<slug>/ruleset": ADMIN,
    "POST /api/v1/challenges/<slug>/ruleset/dry-run": ADMIN,
    "POST /api/v1/challenges/<slug>/registrations": MEMBERS,
    "GET /api/v1/challenges/<slug>/registration": MEMBERS,
    "PATCH /api/v1/challenges/<slug>/registration": MEMBERS,
    "GET /api/v1/challenges/<slug>/leaderboard": EVERYONE,
    "GET /api/v1/challenges/<slug>/leaderboard/teams": EVERYONE,
    "GET /api/v1/challenges/<slug>/leaderboard/me": MEMBERS,
    "GET /api/v1/challenges/<slug>/totals": EVERYONE,
    "GET /api/v1/challenges/<slug>/certificate": MEMBERS,
    "GET /api/v1/challenges/<slug>/review-queue": STAFF,
    "GET /api/v1/challenges/<slug>/beneficiaries": EVERYONE,
    "POST /api/v1/challenges/<slug>/beneficiaries": ADMIN,
    "GET /api/v1/challenges/<slug>/money": EVERYONE,
    "GET /api/v1/challenges/<slug>/donations": EVERYONE,
    "POST /api/v1/challenges/<slug>/donations": EVERYONE,
    "GET /api/v1/challenges/<slug>/pledges": MEMBERS,
    "POST /api/v1/challenges/<slug>/pledges": SPONSORS,
    "POST /api/v1/pledges/<int:pledge_id>/payments": ADMIN,
    "GET /api/v1/payments/<reference>": EVERYONE,
    "POST /api/v1/payments/<reference>/refunds": ADMIN,
    "GET /api/v1/reconciliation": ADMIN,
    "GET /api/v1/me": MEMBERS,
    "GET /api/v1/tokens": MEMBERS,
    "DELETE /api/v1/tokens/<int:token_id>": MEMBERS,
    "GET /api/v1/activities": MEMBERS,
    "POST /api/v1/activities": MEMBERS,
    "POST /api/v1/activities/upload": MEMBERS,
    "GET /api/v1/activities/<int:activity_id>": MEMBERS,
    "POST /api/v1/results/<int:result_id>/appeal": MEMBERS,
    "POST /api/v1/results/<int:result_id>/decision": STAFF,
}
# Routes whose normal answer is a redirect to a sign-in page (signing out), so such a redirect is not a denial.
SIGN_IN_IS_THE_OUTCOME = {"POST /operator/signout"}
CSRF_REFUSAL = "The form expired"  # errors/form_expired.html, in tenant A's language (English)
ROLES = ("anonymous", "participant", "sponsor", "moderator", "admin", "operator", "other_admin")


@pytest.fixture
def site(make_app):
    app = make_app(PLUGINS=PLUGINS, RATELIMIT_ENABLED=False, STRAVA_VERIFY_TOKEN="matrix-verify",
                   GATEWAY_ENDPOINTS=OFFLINE_GATEWAYS)
    with app.app_context():
        alpha = populate(app, "alpha", "qqalphamarkqq", athlete_id="9100001")
        beta = populate(app, "beta", "qqbetamarkqq", athlete_id="9100002")
        create_tenant("gamma", "Gamma (the operator suspends it)")
        create_operator("op@kindstride.example", "Operator", "operator password")
        db.session.commit()
        yield app, alpha, beta


def _callers(app, a, b):
    """role -> (caller on A's site, caller on the operator site)."""
    platform = host_of(None)
    operator = session_of(app, platform, "op@kindstride.example", "operator password", operator=True)
    other = session_of(app, b.host, b.emails["admin"])
    callers = {
        "anonymous": (Caller("anonymous", a.host, *session_of(app, a.host)),
                      Caller("anonymous", platform, *session_of(app, platform))),
        "operator": (Caller("operator", a.host, *operator), Caller("operator", platform, *operator)),
        "other_admin": (Caller("other_admin", a.host, *other, bearer=b.tokens["admin"]),
                        Caller("other_admin", platform, *other, bearer=b.tokens["admin"])),
    }
    for role, person in (("participant", "runner"), ("sponsor", "sponsor"), ("moderator", "moderator"),
                         ("admin", "admin")):
        cookie = session_of(app, a.host, a.emails[person])
        callers[role] = (Caller(role, a.host, *cookie, bearer=a.tokens[person]),
                         Caller(role, platform, *cookie, bearer=a.tokens[person]))
    return callers


def _values(a, route):
    return {
        "slug": "gamma" if route.endpoint.startswith("operator.") else a.challenge_slug,
        "team_id": a.team_ids[0], "registration_id": a.registration_ids[0], "user_id": a.users["spare"],
        "token_id": a.spare_token_id, "activity_id": a.activity_ids[0], "pledge_id": a.pledge_ids[0],
        "result_id": a.result_ids["flagged" if "decision" in route.rule or "review" in route.rule else "appealed"],
        # Refunds name no real payment: the access check comes first, and no gateway is asked for money.
        "reference": "ks-no-such-payment" if "refund" in route.rule else a.payment_refs[0],
        "code": a.certificate_codes[0], "token": "not-a-real-token", "gateway_name": "vnpay",
        "filename": "logo.svg", "action": "suspend", "upload_id": a.upload_ids[0],
    }


def _request(route):
    """(kind, data) of a request that passes validation up to the access check."""
    window = {"registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
              "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
              "counting_start": (NOW - timedelta(days=1)).isoformat(),
              "counting_end": (NOW + timedelta(days=9)).isoformat()}
    table = {
        "POST /api/v1/challenges/<slug>/ruleset/dry-run": ("json", {"ruleset": {}}),
        "PUT /api/v1/challenges/<slug>/ruleset": ("json", {"ruleset": {}}),
        "POST /api/v1/payments/<reference>/refunds": ("json", {"amount": 1}),
        "POST /api/v1/pledges/<int:pledge_id>/payments": ("json", {"amount": 1, "reference": "matrix"}),
        "POST /api/v1/results/<int:result_id>/appeal": ("json", {"message": "matrix"}),
        "POST /api/v1/results/<int:result_id>/decision": ("json", {"decision": "rejected", "comment": "matrix"}),
        "POST /api/v1/activities": ("json", {"sport": "run", "start": (NOW - timedelta(hours=3)).isoformat(),
                                             "moving_s": 1800, "distance_m": 5000}),
        "POST /api/v1/activities/upload": ("files", {"files": (b"not an activity", "matrix.gpx")}),
        "POST /api/v1/challenges": ("json", {"slug": "matrix", "title": "Matrix", "sports": ["run"],
                                             "preset": "nope", **window}),
        "POST /activities/upload": ("files", {"files": (b"not an activity", "matrix.gpx")}),
        "POST /admin/challenges/<slug>/review/<int:result_id>": ("form", {"decision": "rejected",
                                                                          "comment": "matrix"}),
        "POST /admin/members/<int:user_id>/roles": ("form", {"roles": ["participant"]}),
        "POST /admin/challenges/<slug>/ruleset": ("form", {"mode": "json", "action": "dry_run",
                                                           "ruleset_json": "{}"}),
        "POST /signin": ("form", {"email": "nobody@example.com", "password": "wrong password"}),
        "POST /operator/signin": ("form", {"email": "nobody@example.com", "password": "wrong password"}),
        "GET /strava/webhook": ("query", {"hub.mode": "subscribe", "hub.verify_token": "matrix-verify",
                                          "hub.challenge": "x"}),
        "POST /strava/webhook": ("json", {"object_type": "athlete", "aspect_type": "update", "updates": {},
                                          "object_id": 1, "owner_id": 1}),
        "GET /payments/<gateway_name>/webhook": ("query", {"vnp_TxnRef": "x", "vnp_SecureHash": "0"}),
        "POST /payments/<gateway_name>/webhook": ("query", {"vnp_TxnRef": "x", "vnp_SecureHash": "0"}),
        "GET /payments/<gateway_name>/return": ("query", {"vnp_TxnRef": "x", "vnp_SecureHash": "0"}),
    }
    if route.key in table:
        return table[route.key]
    if route.method == "GET":
        return None, None
    return ("json", {}) if route.is_api else ("form", {})


def _decision(route, response):
    if response.status_code in (401, 403):
        return "deny"
    if response.status_code == 400 and CSRF_REFUSAL in response.get_data(as_text=True):
        return "deny"  # a cookie that is no session here carries no CSRF token either: refused before the view
    redirect = urlsplit(response.headers.get("Location", "")).path if response.status_code in (301, 302, 303, 307,
                                                                                                308) else None
    if redirect in ("/signin", "/operator/signin") and route.key not in SIGN_IN_IS_THE_OUTCOME:
        return "deny"
    return "allow"


def test_every_route_by_every_role_matches_the_written_matrix(site, capsys):
    app, a, b = site
    app_routes = routes(app)
    keys = {route.key for route in app_routes}
    assert not keys - set(MATRIX), f"routes without a line in MATRIX: {sorted(keys - set(MATRIX))}"
    assert not set(MATRIX) - keys, f"MATRIX lines for routes that do not exist: {sorted(set(MATRIX) - keys)}"

    callers = _callers(app, a, b)
    mismatches, requests, rows = [], 0, []
    # Routes that change who may do what (revoking, suspending) go last, so they cannot starve the others.
    order = sorted(app_routes, key=lambda r: (r.method == "DELETE" or "revoke" in r.rule or "roles" in r.rule, r.key))
    for route in order:
        path = fill(route.rule, _values(a, route))
        kind, data = _request(route)
        observed = {}
        for role in ROLES:
            tenant_caller, platform_caller = callers[role]
            caller = platform_caller if route.endpoint.startswith("operator.") else tenant_caller
            kwargs = {}
            if kind == "json":
                kwargs["json_body"] = data
            elif kind == "form":
                kwargs["form"] = data
            elif kind == "query":
                kwargs["query"] = data
            elif kind == "files":
                kwargs["files"] = {name: (io.BytesIO(content), filename) for name, (content, filename) in data.items()}
            response = send(app, caller, route.method, path, **kwargs)
            requests += 1
            assert response.status_code < 500, f"{role}: {route.key} -> {response.status_code}"
            observed[role] = _decision(route, response)
            expected = "allow" if role in MATRIX[route.key] else "deny"
            if observed[role] != expected:
                mismatches.append(f"{route.key} as {role}: {observed[role]} ({response.status_code} "
                                  f"{response.headers.get('Location', '')}), the matrix says {expected}")
        rows.append((route.key[:70], *("Y" if observed[role] == "allow" else "-" for role in ROLES)))
    with capsys.disabled():
        print_table(f"Authorization matrix: {len(app_routes)} routes x {len(ROLES)} roles = {requests} requests "
                    f"(Y allowed, - denied)", ["route", *ROLES], rows)
    assert not mismatches, "\n".join(mismatches)
