"""Tenant isolation sweep, generated from the URL map and the OpenAPI document.

Two tenants get the same realistic dataset; every text of tenant B carries a secret marker. Then every route
(every method of every rule of the URL map, the OpenAPI operations' query parameters included) is called by
people of tenant A (anonymous, participant and admin with session cookies, participant and admin with API
tokens) naming tenant B's objects: its ids, slugs, payment references, certificate codes, emailed tokens, join
codes and signed gateway notifications, and presenting B's session cookie and API token. Then again on an
unknown host and on the bare platform domain with B's credentials, and finally on B's own host once B is
suspended.

A leak is a response containing any of B's markers, or any change to B's rows (a snapshot of every B row before
and after, after the queued jobs ran). A 5xx (other than the suspended site's 503) fails too. As A's admin, every
route naming an object of B answers 404 (the object does not exist here), not 403 or 500.
"""

import io
import itertools
from datetime import timedelta

import pytest

from kindstride.tenancy.services import set_status
from tests.support.jobs import run_queued_jobs
from tests.support.sweep import (
    NOW,
    OFFLINE_GATEWAYS,
    PASSWORD,
    PLUGINS,
    Caller,
    differences,
    fill,
    flask_rule_for,
    host_of,
    mail_marker,
    name_marker,
    openapi_operations,
    populate,
    print_table,
    response_text,
    routes,
    send,
    session_of,
    snapshot,
    vnpay_ipn,
)

MARK_A, MARK_B = "qqalphamarkqq", "qqbetamarkqq"
UNKNOWN_HOST = "nowhere.kindstride.test"
MAX_COMBINATIONS = 8
# Parameters whose B value names an object that exists in B only: as A's admin the answer must be 404.
B_ONLY_PARAMS = {"team_id", "result_id", "user_id", "token_id", "activity_id", "pledge_id", "reference", "code",
                 "upload_id"}
# Routes that name B's object yet are not a lookup of it, with what they answer instead of 404.
NOT_A_LOOKUP = {
    # A GET only shows the button (mail scanners must not spend the token); the POST says the link is invalid.
    ("GET", "accounts.confirm_page"): 200, ("POST", "accounts.confirm_page"): 400,
    ("GET", "accounts.reset_password_page"): 200, ("POST", "accounts.reset_password_page"): 400,
}


@pytest.fixture
def worlds(make_app):
    app = make_app(PLUGINS=PLUGINS, RATELIMIT_ENABLED=False, STRAVA_VERIFY_TOKEN="sweep-verify",
                   GATEWAY_ENDPOINTS=OFFLINE_GATEWAYS)
    with app.app_context():
        alpha = populate(app, "alpha", MARK_A, athlete_id="9000001")
        beta = populate(app, "beta", MARK_B, currency="VND", athlete_id="9000002")
        yield app, alpha, beta


def _values(a, b, route):
    """Candidate values of B for each parameter of a route."""
    values = {**b.ints(),
              "slug": [b.own_slug, b.challenge_slug], "reference": b.payment_refs, "code": b.certificate_codes,
              "token": [b.confirm_token, b.reset_token], "gateway_name": ["vnpay", "stripe"],
              "filename": ["logo.svg", "../beta/tenant.toml"], "action": ["suspend", "activate"],
              "upload_id": b.upload_ids}
    if route.endpoint.startswith("operator."):
        values["slug"] = [b.slug]
    unknown = [name for name in route.params if name not in values]
    assert not unknown, f"{route.key}: teach the sweep which of B's values to put in {unknown}"
    choices = [values[name] for name in route.params]
    return [dict(zip(route.params, combo, strict=True)) for combo in itertools.product(*choices)][:MAX_COMBINATIONS]


def _window():
    return {"registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=1)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat()}


def _gpx():
    return (b'<?xml version="1.0"?><gpx version="1.1" creator="sweep"><trk><trkseg>'
            b'<trkpt lat="10.0" lon="106.0"><time>2024-01-01T00:00:00Z</time></trkpt>'
            b'<trkpt lat="10.01" lon="106.0"><time>2024-01-01T00:06:00Z</time></trkpt></trkseg></trk></gpx>')


def _bodies(a, b, route):
    """The bodies to send: each names B's objects where the route takes any (valid otherwise, so that the
    request reaches the lookup). Returns [(kind, data)] with kind "form", "json", "files" or "query"."""
    team, code, division = b.team_ids[0], b.join_codes[0], b.division_ids[0]
    registration, beneficiary = b.registration_ids[0], b.beneficiary_ids[0]
    ipn = vnpay_ipn(b, b.gateway_refs[0], 5000)
    donation = {"amount": 50_000, "currency": "USD", "gateway": "vnpay", "donor_name": "Sweep",
                "donor_email": "sweep@example.com", "idempotency_key": "sweep-donation-1"}
    donate_form = {"preset": "100000", "gateway": "vnpay", "donor_name": "Sweep", "donor_email": "sweep@example.com",
                   "idempotency_key": "sweep-donation-key-0001"}
    pledge_form = {"rule": "per_km", "p.pledge.per_km.rate_per_km": "10"}
    table = {
        "accounts.sign_in_page": [("form", {"email": b.emails["admin"], "password": PASSWORD})],
        "accounts.sign_up_page": [("form", {"email": b.emails["runner"], "name": "Sweep", "password": PASSWORD})],
        "accounts.resend_confirmation": [("form", {"email": b.emails["spare"]})],
        "accounts.forgot_password_page": [("form", {"email": b.emails["admin"]})],
        "accounts.reset_password_page": [("form", {"password": "a brand new password"})],
        "accounts.create_token": [("form", {"name": "sweep", "scopes": "read", "days": "5"})],
        "members.set_roles": [("form", {"roles": ["participant", "admin"]})],
        "challenges.register_page": [("form", {"mode": "join", "team_id": team}),
                                     ("form", {"mode": "code", "join_code": code}),
                                     ("form", {"mode": "create", "new_team": "Sweepers", "division_id": division})],
        "challenges.switch_team_page": [("form", {"mode": "join", "team_id": team}),
                                        ("form", {"mode": "code", "join_code": code})],
        "challenges.appeal": [("form", {"message": "sweep"})],
        "challenges.upload_page": [("files", {"files": (io.BytesIO(_gpx()), "sweep.gpx")})],
        "challenge_admin.ruleset_page": [("form", {"mode": "json", "action": "dry_run", "ruleset_json": "{}"})],
        "challenge_admin.decide": [("form", {"decision": "accepted", "comment": "sweep"})],
        "payments.webhook": [("query", ipn)],
        "payments.payer_return": [("query", ipn)],
        "strava.webhook": [("json", {"object_type": "athlete", "aspect_type": "update", "updates": {},
                                     "object_id": int(b.athlete_id), "owner_id": int(b.athlete_id)})],
        "strava.webhook_handshake": [("query", {"hub.mode": "subscribe", "hub.verify_token": "sweep-verify",
                                                "hub.challenge": "sweep"})],
        "fundraising.donate_page": [("form", {**donate_form, "team": team}),
                                    ("form", {**donate_form, "participant": registration}),
                                    ("form", {**donate_form, "beneficiary_id": beneficiary})],
        "fundraising.pledge_page": [("form", {**pledge_form, "team_id": team}),
                                    ("form", {**pledge_form, "division_id": division}),
                                    ("form", {**pledge_form, "beneficiary_id": beneficiary})],
        "fundraising.my_page": [("form", {"goal": "10", "story": "sweep"})],
        "money_admin.beneficiaries_page": [("form", {"name": "Sweep charity"})],
        "money_admin.refund": [("form", {"amount": "1"})],
        "money_admin.record_pledge_payment": [("form", {"amount": "1", "reference": "sweep"})],
        "api_challenges.Challenges": [("json", {"slug": "sweep-api", "title": "Sweep", "sports": ["run"],
                                                "preset": "vn-charity-run-2024", **_window(),
                                                "qualifiers": [{"challenge": b.own_slug, "top_per_gender": 2}]})],
        "api_challenges.Registrations": [("json", {"team_id": team}), ("json", {"join_code": code}),
                                         ("json", {"new_team": "Sweepers", "division_id": division})],
        "api_challenges.MyRegistration": [("json", {"team_id": team}), ("json", {"join_code": code})],
        "api_challenges.Ruleset": [("json", {"ruleset": {}})],
        "api_challenges.RulesetDryRun": [("json", {"ruleset": {}})],
        "api_fundraising.Beneficiaries": [("json", {"name": "Sweep charity"})],
        "api_fundraising.Donations": [("json", {**donation, "team_id": team}),
                                      ("json", {**donation, "registration_id": registration}),
                                      ("json", {**donation, "beneficiary_id": beneficiary})],
        "api_fundraising.Pledges": [("json", {"rule": "per_km", "params": {"rate_per_km": 10}, "team_id": team}),
                                    ("json", {"rule": "per_km", "params": {"rate_per_km": 10},
                                              "beneficiary_id": beneficiary}),
                                    ("json", {"rule": "per_km", "params": {"rate_per_km": 10},
                                              "division_id": division})],
        "api_fundraising.Refunds": [("json", {"amount": 100})],
        "api_fundraising.PledgePayments": [("json", {"amount": 100, "reference": "sweep"})],
        "api_activities.Appeal": [("json", {"message": "sweep"})],
        "api_moderation.Decision": [("json", {"decision": "accepted", "comment": "sweep"})],
        "api_activities.Activities": [("json", {"sport": "run", "start": (NOW - timedelta(hours=2)).isoformat(),
                                                "moving_s": 1800, "distance_m": 5000})],
        "api_activities.Upload": [("files", {"files": (io.BytesIO(_gpx()), "sweep.gpx")})],
    }
    if route.endpoint in table:
        return table[route.endpoint]
    # Anything else (a new route): every id of B by its usual name.
    generic = {name: ids[0] for name, ids in b.ints().items()} | {"join_code": code, "team": team,
                                                                  "participant": registration}
    return [("json" if route.is_api else "form", generic)]


def _query_variants(route, b, api_query_params):
    """GET: no query, and every query parameter that takes an id filled with B's (OpenAPI-declared ones for
    the API, the usual names for pages)."""
    ids = {name: values[0] for name, values in b.ints().items()}
    if route.is_api:
        declared = api_query_params.get((route.method, route.rule), [])
        query = {name: ids[name] for name in declared if name in ids}
    else:
        query = {**ids, "team": ids["team_id"], "participant": ids["registration_id"]}
    return [None, query] if query else [None]


def _callers(app, a, b):
    anonymous = session_of(app, a.host)
    runner = session_of(app, a.host, a.emails["runner"])
    admin = session_of(app, a.host, a.emails["admin"])
    b_admin = session_of(app, b.host, b.emails["admin"])
    return [
        Caller("A anonymous", a.host, *anonymous),
        Caller("A participant (cookie)", a.host, *runner),
        Caller("A admin (cookie)", a.host, *admin),
        Caller("A participant (token)", a.host, bearer=a.tokens["runner"]),
        Caller("A admin (token)", a.host, bearer=a.tokens["admin"]),
        Caller("B admin's cookie+token on A", a.host, *b_admin, bearer=b.tokens["admin"]),
        Caller("B admin on an unknown host", UNKNOWN_HOST, *b_admin, bearer=b.tokens["admin"]),
        Caller("B admin on the platform domain", host_of(None), *b_admin, bearer=b.tokens["admin"]),
    ]


class Sweep:
    def __init__(self, app, *markers):
        self.app, self.markers = app, [marker.lower() for marker in markers]
        self.requests = 0
        self.routes_tried = set()
        self.leaks, self.errors, self.not_404 = [], [], []
        self.per_caller = {}

    def call(self, caller, route, path, body, b_only):
        kind, data = body if body else (None, None)
        kwargs = {}
        if kind == "form":
            kwargs["form"] = data
        elif kind == "json":
            kwargs["json_body"] = data
        elif kind == "files":
            kwargs["files"] = {k: (io.BytesIO(v[0].getvalue()), v[1]) for k, v in data.items()}
        elif kind in ("query", "get-query"):
            kwargs["query"] = data
        response = send(self.app, caller, route.method, path, **kwargs)
        self.requests += 1
        self.routes_tried.add(route.key)
        counts = self.per_caller.setdefault(caller.name, [0, 0])
        counts[0] += 1
        text = response_text(response)
        sent = f"{path} {data}".lower()  # a marker the request itself carried may be echoed back: not a leak
        where = f"{caller.name}: {route.method} {path} {kind or ''} {data if kind != 'files' else ''}"
        if any(marker in text for marker in self.markers if marker not in sent):
            counts[1] += 1
            self.leaks.append(f"{where} -> {response.status_code}")
        if response.status_code >= 500 and response.status_code != 503:
            self.errors.append(f"{where} -> {response.status_code}")
        return response


def test_tenant_a_never_reaches_tenant_b(worlds, capsys):
    app, a, b = worlds
    app_routes = routes(app)
    document, operations = openapi_operations(app, a.host)
    # The OpenAPI document and the URL map agree: every operation is a route the sweep calls.
    api_query_params = {}
    for method, openapi_rule, operation in operations:
        rule = flask_rule_for(openapi_rule, app_routes)
        assert rule is not None, f"OpenAPI {method} {openapi_rule} has no route in the URL map"
        api_query_params[(method, rule)] = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    api_routes = {(r.method, r.rule) for r in app_routes if r.is_api and not r.rule.endswith("openapi.json")}
    assert api_routes <= set(api_query_params), api_routes - set(api_query_params)

    callers = _callers(app, a, b)
    # Positive control: B's own people do see B's markers, so an absent marker below means something.
    b_self = Caller("B admin on B", b.host, *session_of(app, b.host, b.emails["admin"]), bearer=b.tokens["admin"])
    for path in ("/challenges/run", f"/donations/{b.payment_refs[0]}", "/api/v1/me", "/admin/challenges/run/review",
                 "/api/v1/challenges/run/donations"):
        response = send(app, b_self, "GET", path)
        assert response.status_code == 200 and MARK_B in response_text(response), path
    before = snapshot(b.tenant_id)
    sweep = Sweep(app, MARK_B, name_marker(MARK_B), mail_marker(MARK_B))
    for route in app_routes:
        combos = _values(a, b, route) if route.params else [{}]
        bodies = [None] if route.method == "GET" else _bodies(a, b, route)
        for values in combos:
            path = fill(route.rule, values)
            b_only = any(name in B_ONLY_PARAMS for name in values) or values.get("slug") == b.own_slug
            variants = list(bodies)
            if route.method == "GET":
                extra = _bodies(a, b, route) if route.endpoint in ("payments.webhook", "payments.payer_return",
                                                                  "strava.webhook_handshake") else []
                variants = [("get-query", q) if q else None for q in _query_variants(route, b, api_query_params)]
                variants += extra
            for caller in callers:
                for body in variants:
                    response = sweep.call(caller, route, path, body, b_only)
                    authorised = caller.name == ("A admin (token)" if route.is_api else "A admin (cookie)")
                    if authorised and b_only:
                        expected = NOT_A_LOOKUP.get((route.method, route.endpoint), 404)
                        if response.status_code != expected:
                            sweep.not_404.append(f"{route.method} {path} {body and body[0]}: "
                                                 f"{response.status_code}, expected {expected}")
    run_queued_jobs(app)
    changes = differences(before, snapshot(b.tenant_id))

    # Tenant B suspended: its own people, with its own cookie and token, get the suspended page and nothing else.
    set_status(b.slug, "suspended")
    suspended_before = snapshot(b.tenant_id)
    fresh = session_of(app, a.host)  # an anonymous session: B's own pages cannot hand one out any more
    b_cookie = [c for c in callers if c.name.startswith("B admin's")][0]
    suspended = [Caller("B admin on suspended B", b.host, b_cookie.cookie, b_cookie.csrf, b.tokens["admin"]),
                 Caller("anonymous on suspended B", b.host, *fresh)]
    suspended_statuses = set()
    own = {**b.ints(), "slug": [b.challenge_slug], "reference": b.payment_refs,
           "code": b.certificate_codes, "token": [b.reset_token], "gateway_name": ["vnpay"],
           "filename": ["logo.svg"], "action": ["suspend"], "upload_id": b.upload_ids}
    on_suspended = Sweep(app, MARK_B, mail_marker(MARK_B))
    for route in app_routes:
        path = fill(route.rule, {name: own[name][0] for name in route.params})
        body = None if route.method == "GET" else _bodies(a, b, route)[0]
        for caller in suspended:
            response = on_suspended.call(caller, route, path, body, False)
            suspended_statuses.add(response.status_code)
    run_queued_jobs(app)
    suspended_changes = differences(suspended_before, snapshot(b.tenant_id))
    set_status(b.slug, "active")

    with capsys.disabled():
        print_table("Tenant isolation sweep (tenant A -> tenant B)",
                    ["caller", "requests", "responses with B's marker"],
                    [(name, sent, leaked) for name, (sent, leaked) in {**sweep.per_caller,
                                                                       **on_suspended.per_caller}.items()])
        total_requests = sweep.requests + on_suspended.requests
        print_table("Summary", ["routes tried", "OpenAPI operations", "requests sent", "leaks found",
                                "B rows changed", "5xx"],
                    [(len(sweep.routes_tried), len(operations), total_requests,
                      len(sweep.leaks) + len(on_suspended.leaks) + len(changes) + len(suspended_changes),
                      len(changes) + len(suspended_changes), len(sweep.errors) + len(on_suspended.errors))])
    assert sweep.routes_tried == {r.key for r in app_routes}
    assert not sweep.leaks, "\n".join(sweep.leaks[:20])
    assert not on_suspended.leaks, "\n".join(on_suspended.leaks[:20])
    assert not changes, changes
    assert not suspended_changes, suspended_changes
    assert not sweep.errors and not on_suspended.errors, "\n".join((sweep.errors + on_suspended.errors)[:20])
    assert not sweep.not_404, "\n".join(sweep.not_404[:40])
    assert suspended_statuses == {503}, suspended_statuses
