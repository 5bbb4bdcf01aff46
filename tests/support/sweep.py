"""Shared pieces of the isolation sweep, the authorization matrix and the bad-input corpus.

- `populate(app, slug, ...)` builds a realistic dataset in one tenant (people with every role, two challenges,
  teams, registrations, activities judged accepted / rejected / flagged, an appeal and a decision, beneficiaries,
  a pledge, a paid donation with its ledger entries, API tokens, emailed account tokens, a certificate code and a
  Strava connection). Every text a person typed carries the tenant's marker, so a response that shows any of it
  is found by a substring search.
- `Caller` is who sends a request: a Host, a session cookie (with the CSRF token that goes with it) and/or a
  bearer token. `send()` sends one request with a cookie-less test client, so a cookie never changes behind the
  caller's back (a request that clears the session does not sign the caller out for the next one).
- `snapshot(tenant_id)` is every row of a tenant (all tenant-owned tables, its tenant row, domains and Strava
  routes), to compare before and after: any difference is a state change.
- `routes(app)` lists the URL map as (method, rule, endpoint) and `fill(rule, values)` builds a path.
"""

import hashlib
import hmac
import json
import re
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus, urlencode

import sqlalchemy as sa

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.activities import moderation, upload_jobs
from kindstride.activities.models import FLAGGED, REJECTED, ActivityResult
from kindstride.activities.services import add_entered
from kindstride.activities.strava_models import StravaAthleteRoute, StravaConnection
from kindstride.challenges import services as challenges
from kindstride.challenges.certificates import certificate_code
from kindstride.crypto import secrets_box
from kindstride.db import db, tenant_tables, utcnow
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Donation
from kindstride.ledger.services import Posting, record
from kindstride.payments.models import Payment
from kindstride.tenancy.models import Tenant, TenantDomain
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant, store_secret
from tests.conftest import BASE_DOMAIN
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)
PASSWORD = "correct horse battery"
PLUGINS = ["core_rules", "stripe", "vnpay"]
# Gateways' addresses on a closed local port: a test that reaches them fails fast, and no request leaves the machine.
OFFLINE_GATEWAYS = {"vnpay.payment_url": "http://127.0.0.1:9/pay", "vnpay.api_url": "http://127.0.0.1:9/api",
                    "stripe.api_base": "http://127.0.0.1:9"}
SESSION_COOKIE = "kindstride_session"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# The roles each person of a populated tenant holds.
PEOPLE = {
    "admin": ("participant", "admin"),
    "moderator": ("participant", "moderator"),
    "sponsor": ("participant", "sponsor"),
    "runner": ("participant",),
    "runner2": ("participant",),
    "spare": ("participant",),
}
# The API scopes each role may hold (accounts.services.PRIVILEGED_SCOPES).
ROLE_SCOPES = {
    "participant": ["read", "activities:write"],
    "sponsor": ["read", "activities:write", "pledges:write"],
    "moderator": ["read", "activities:write", "moderate"],
    "admin": ["read", "activities:write", "pledges:write", "moderate", "admin"],
}
PERSON_ROLE = {"admin": "admin", "moderator": "moderator", "sponsor": "sponsor", "runner": "participant",
               "runner2": "participant", "spare": "participant"}


def name_marker(marker):
    return marker.replace("mark", "name")


def mail_marker(marker):
    """Addresses carry a marker of their own: a form that echoes the address it was sent does not hide the rest."""
    return marker.replace("mark", "mail")


def host_of(slug):
    return f"{slug}.{BASE_DOMAIN}" if slug else BASE_DOMAIN


# ------------------------------------------------------------------------------------------------ a dataset

@dataclass
class World:
    """One populated tenant: every identifier a request could name, and its secrets."""

    slug: str
    marker: str
    tenant_id: int
    host: str
    users: dict = field(default_factory=dict)  # person -> user id
    emails: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)  # person -> API token with every scope the person may hold
    token_ids: dict = field(default_factory=dict)
    spare_token_id: int = 0
    challenge_slug: str = "run"  # the same slug exists in every populated tenant
    own_slug: str = ""  # a slug only this tenant has
    division_ids: list = field(default_factory=list)
    team_ids: list = field(default_factory=list)
    join_codes: list = field(default_factory=list)
    registration_ids: list = field(default_factory=list)
    activity_ids: list = field(default_factory=list)
    result_ids: dict = field(default_factory=dict)  # accepted / rejected (appealed) / flagged / decided
    beneficiary_ids: list = field(default_factory=list)
    pledge_ids: list = field(default_factory=list)
    payment_refs: list = field(default_factory=list)
    gateway_refs: list = field(default_factory=list)
    donation_ids: list = field(default_factory=list)
    confirm_token: str = ""
    reset_token: str = ""
    certificate_codes: list = field(default_factory=list)
    upload_ids: list = field(default_factory=list)  # the runner's long uploads (their progress pages)
    athlete_id: str = ""
    vnpay_secret: str = ""
    vnpay_tmn: str = ""

    def ints(self):
        """Every integer id of the tenant, by the URL parameter names that take them."""
        return {
            "team_id": self.team_ids, "result_id": list(self.result_ids.values()),
            "user_id": list(self.users.values()), "token_id": [*self.token_ids.values(), self.spare_token_id],
            "activity_id": self.activity_ids, "pledge_id": self.pledge_ids,
            "registration_id": self.registration_ids, "division_id": self.division_ids,
            "beneficiary_id": self.beneficiary_ids, "donation_id": self.donation_ids,
        }


def _run(start, km, pace_s, title, splits=True):
    return {"sport": "run", "start": start.isoformat(), "moving_s": km * pace_s, "distance_m": km * 1000,
            "has_gps": True, "title": title, "split_paces_s_per_km": [pace_s] * int(km) if splits else []}


def populate(app, slug, marker, *, currency="USD", athlete_id="9000001", domains=(), vnpay=None):
    """Create tenant `slug` with a realistic dataset; every typed text carries `marker`. Returns a World.
    `vnpay` is (tmn code, hash secret) of a VNPay to use, e.g. tests.support.fake_vnpay's."""
    # The tenant's name carries a marker of its own: a suspended site still shows its name on its own host.
    tenant = create_tenant(slug, f"Club {name_marker(marker)}", "en", currency, "Asia/Ho_Chi_Minh")
    tmn, secret = vnpay or (f"TMN{slug.upper()[:5]}", f"VNPAYSECRET{slug.upper()}{uuid.uuid4().hex[:12]}")
    tenant.settings = {**tenant.settings, "plugins": PLUGINS, "gateways": {"vnpay": {"tmn_code": tmn}},
                       "contact_email": f"fund.{mail_marker(marker)}@{slug}.example"}
    if domains:
        from kindstride.tenancy.services import _set_domains

        _set_domains(tenant, list(domains))
    db.session.commit()
    world = World(slug=slug, marker=marker, tenant_id=tenant.id, host=host_of(slug), own_slug=f"{slug}-only",
                  athlete_id=athlete_id, vnpay_secret=secret, vnpay_tmn=tmn)
    with tenant_scope(tenant.id):
        store_secret("gateway.vnpay.hash_secret", secret)
        people = {}
        for person, roles in PEOPLE.items():
            email = f"{person}.{mail_marker(marker)}@{slug}.example"
            user = accounts.sign_up(email, f"{person.title()} {marker}", PASSWORD)
            user.email_confirmed_at = utcnow()
            for role in roles:
                accounts.grant_role(user, role)
            people[person] = user
            world.users[person], world.emails[person] = user.id, email
        for person, user in people.items():
            record_, token = accounts.create_api_token(user, f"token {marker}", ROLE_SCOPES[PERSON_ROLE[person]], 30)
            world.tokens[person], world.token_ids[person] = token, record_.id
        spare, _token = accounts.create_api_token(people["admin"], f"spare {marker}", ["read"], 30)
        world.spare_token_id = spare.id
        world.confirm_token = accounts.issue_account_token(people["spare"], accounts.CONFIRM_EMAIL)
        world.reset_token = accounts.issue_account_token(people["spare"], accounts.RESET_PASSWORD)

        window = {"registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
                  "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
                  "counting_start": (NOW - timedelta(days=5)).isoformat(),
                  "counting_end": (NOW + timedelta(days=20)).isoformat()}
        run = challenges.create_challenge({
            "slug": "run", "title": f"Run {marker}", "description": f"About {marker}", "sports": ["run"],
            "divisions": [f"Company {marker}"], "goal_km": 1000, "preset": "vn-charity-run-2024", **window},
            created_by=people["admin"])
        own = challenges.create_challenge({
            "slug": world.own_slug, "title": f"Own {marker}", "description": f"Only {marker}",
            "sports": ["run", "walk"], "preset": "company-month", **window}, created_by=people["admin"])
        division = challenges.divisions_of(run)[0]
        world.division_ids.append(division.id)
        teams = [challenges.create_team(run, f"Team {marker} {n}", division.id, captain=people["runner"])
                 for n in (1, 2)]
        world.team_ids += [team.id for team in teams]
        world.join_codes += [team.join_code for team in teams]
        registrations = [
            challenges.register(run, people["runner"], {"team_id": teams[0].id, "gender": "female"}),
            challenges.register(run, people["runner2"], {"team_id": teams[1].id, "gender": "male"}),
            challenges.register(own, people["runner"], {}),
        ]
        world.registration_ids += [r.id for r in registrations]
        activities = [
            add_entered(people["runner"], _run(NOW - timedelta(hours=30), 5, 330, f"Morning {marker}"), "api"),
            add_entered(people["runner"], _run(NOW - timedelta(hours=20), 3, 360, f"Nosplit {marker}", False),
                        "api"),
            add_entered(people["runner2"], _run(NOW - timedelta(hours=26), 4, 150, f"Too fast {marker}"), "api"),
            add_entered(people["runner2"], _run(NOW - timedelta(hours=10), 2, 400, f"Unsplit {marker}", False),
                        "api"),
            add_entered(people["admin"], _run(NOW - timedelta(hours=8), 6, 300, f"Admin run {marker}"), "api"),
        ]
        world.activity_ids += [a.id for a in activities]
        beneficiary = fundraising.add_beneficiary(run, {"name": f"Charity {marker}",
                                                        "description": f"Helps {marker}"})
        world.beneficiary_ids.append(beneficiary.id)
        pledge = fundraising.add_pledge(run, people["sponsor"], {
            "rule": "per_km", "params": {"rate_per_km": 100}, "sponsor_name": f"Sponsor {marker}",
            "beneficiary_id": beneficiary.id})
        world.pledge_ids.append(pledge.id)
        # A long upload of the runner's, imported by a job: its page names the refused file (and the marker).
        world.upload_ids.append(upload_jobs.start(people["runner"], [(f"Notes {marker}.gpx", b"not an activity")]))
        db.session.commit()
    run_queued_jobs(app)
    with tenant_scope(tenant.id):
        run = challenges.get_challenge("run")
        results = {r.activity_id: r for r in db.session.scalars(
            sa.select(ActivityResult).where(ActivityResult.challenge_id == run.id))}
        accepted, flagged, rejected, flagged2 = (results[a] for a in world.activity_ids[:4])
        assert (accepted.status, flagged.status, rejected.status, flagged2.status) == (
            "accepted", FLAGGED, REJECTED, FLAGGED), [r.status for r in results.values()]
        moderation.appeal(rejected, db.session.get(User, world.users["runner2"]), f"Please {marker}")
        moderation.decide(flagged, "accepted", f"Checked {marker}", db.session.get(User, world.users["moderator"]))
        world.result_ids = {"accepted": accepted.id, "decided": flagged.id, "appealed": rejected.id,
                            "flagged": flagged2.id}
        for amount in (5000, 7000):
            payment = Payment(purpose="donation", gateway="vnpay",
                              reference=f"ks{tenant.id}-donati-{uuid.uuid4().hex[:16]}",
                              idempotency_key=uuid.uuid4().hex, gateway_ref=f"{slug[:4]}{uuid.uuid4().hex[:12]}",
                              income_account=fundraising.donations_account(run.id, world.beneficiary_ids[0]),
                              amount=amount, currency=currency, status="succeeded")
            db.session.add(payment)
            db.session.flush()
            record("payment", f"payment:{payment.reference}:captured", currency,
                   [Posting("gateway:vnpay", amount), Posting(payment.income_account, -amount)],
                   memo=f"donation {payment.reference}")
            donation = Donation(challenge_id=run.id, payment_id=payment.id, amount=amount, currency=currency,
                                donor_name=f"Donor {marker}", donor_email=f"donor.{mail_marker(marker)}@example.com",
                                message=f"Go {marker}", beneficiary_id=world.beneficiary_ids[0])
            db.session.add(donation)
            db.session.flush()
            world.payment_refs.append(payment.reference)
            world.gateway_refs.append(payment.gateway_ref)
            world.donation_ids.append(donation.id)
        world.certificate_codes.append(certificate_code(db.session.get(
            challenges.Registration, world.registration_ids[0])))
        db.session.add(StravaConnection(
            user_id=world.users["runner"], athlete_id=athlete_id, access_token=secrets_box().encrypt("access"),
            refresh_token=secrets_box().encrypt("refresh"), expires_at=NOW + timedelta(hours=6),
            scope="read,activity:read_all"))
        db.session.add(StravaAthleteRoute(athlete_id=athlete_id, tenant_id=tenant.id))
        fundraising.accrue_pledges(run.id)
        db.session.commit()
    return world


def gpx_run(start, km=5.0, pace_s=330, name="Morning run", creator="Garmin Forerunner 245"):
    """A GPX recording of a steady run going north from Ho Chi Minh City: one point every 5 seconds."""
    step_s = 5
    metres_per_step = 1000 / pace_s * step_s
    points = []
    for index in range(int(km * 1000 / metres_per_step) + 1):
        moment = (start + timedelta(seconds=index * step_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        latitude = 10.7626 + index * metres_per_step / 111_195
        points.append(f'<trkpt lat="{latitude:.7f}" lon="106.6602000"><time>{moment}</time></trkpt>')
    return (f'<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="{creator}" '
            f'xmlns="http://www.topografix.com/GPX/1/1"><trk><name>{name}</name><type>running</type><trkseg>'
            + "".join(points) + "</trkseg></trk></gpx>").encode()


def vnpay_ipn(world, gateway_ref, amount):
    """A VNPay IPN for one of the world's payments, signed with that tenant's own secret."""
    params = {"vnp_Amount": str(amount * 100), "vnp_BankCode": "NCB", "vnp_OrderInfo": "Donation",
              "vnp_PayDate": "20240101120000", "vnp_ResponseCode": "00", "vnp_TmnCode": world.vnpay_tmn,
              "vnp_TransactionNo": "14000001", "vnp_TransactionStatus": "00", "vnp_TxnRef": gateway_ref}
    pairs = sorted(params.items())
    params["vnp_SecureHash"] = hmac.new(world.vnpay_secret.encode(), urlencode(pairs, quote_via=quote_plus).encode(),
                                        hashlib.sha512).hexdigest()
    return params


# ------------------------------------------------------------------------------------------------ who asks

@dataclass(frozen=True)
class Caller:
    name: str
    host: str
    cookie: str | None = None
    csrf: str | None = None
    bearer: str | None = None


def session_of(app, host, email=None, password=PASSWORD, operator=False):
    """(session cookie, CSRF token) of a visitor of `host`, signed in as `email` when given."""
    client = app.test_client()
    client.on(host)
    if email:
        path = "/operator/signin" if operator else "/signin"
        response = client.submit(path, {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
    form_page = "/operator/signin" if operator or host == BASE_DOMAIN else "/signin"
    token = client.csrf_token(form_page)
    cookie = client.get_cookie(SESSION_COOKIE, domain=host)
    return cookie.value, token


def send(app, caller, method, path, *, query=None, form=None, json_body=None, files=None, csrf=True,
         headers=None):
    """One request as `caller`, from a client that keeps no cookies between requests."""
    client = app.test_client(use_cookies=False)
    client.on(caller.host)
    all_headers = dict(headers or {})
    if caller.cookie:
        all_headers["Cookie"] = f"{SESSION_COOKIE}={caller.cookie}"
    if caller.bearer:
        all_headers["Authorization"] = f"Bearer {caller.bearer}"
    kwargs = {"headers": all_headers, "query_string": query or None}
    if json_body is not None:
        kwargs["json"] = json_body
    elif form is not None or files is not None or method in ("POST", "PUT", "PATCH", "DELETE"):
        data = dict(form or {})
        if csrf and caller.csrf and not path.startswith("/api/"):
            data.setdefault("csrf_token", caller.csrf)
        if files:
            data.update(files)
            kwargs["content_type"] = "multipart/form-data"
        kwargs["data"] = data
    return client.open(path, method=method, **kwargs)


# ------------------------------------------------------------------------------------------------ the URL map

PARAM = re.compile(r"<(?:(?P<converter>[^:<>]+(?:\([^)]*\))?):)?(?P<name>[^<>:]+)>")


@dataclass(frozen=True)
class Route:
    method: str
    rule: str
    endpoint: str

    @property
    def key(self):
        return f"{self.method} {self.rule}"

    @property
    def params(self):
        return [m["name"] for m in PARAM.finditer(self.rule)]

    @property
    def is_api(self):
        return self.rule.startswith("/api/")


def routes(app):
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods & set(METHODS)):
            found.append(Route(method, rule.rule, rule.endpoint))
    return sorted(found, key=lambda r: (r.rule, r.method))


def fill(rule, values):
    return PARAM.sub(lambda m: quote(str(values[m["name"]]), safe=""), rule)


def openapi_operations(app, host):
    """(METHOD, flask rule, OpenAPI operation) of every operation in the served OpenAPI document."""
    document = app.test_client().on(host).get("/api/v1/openapi.json").get_json()
    operations = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method.upper() in METHODS:
                rule = re.sub(r"\{([^}]+)\}", lambda m: f"<{m[1]}>", path)
                operations.append((method.upper(), rule, operation))
    return document, operations


def flask_rule_for(openapi_rule, app_routes):
    """The URL map rule an OpenAPI path names (converters dropped), or None."""
    bare = {PARAM.sub(lambda m: f"<{m['name']}>", r.rule): r.rule for r in app_routes}
    return bare.get(openapi_rule)


# ------------------------------------------------------------------------------------------------ state

def snapshot(tenant_id):
    """Every row of one tenant, as sorted JSON lines per table (platform rows included)."""
    rows = {}
    with tenant_scope(tenant_id):
        for name in tenant_tables():
            table = db.metadata.tables[name]
            result = db.session.execute(sa.select(table).where(table.c.tenant_id == tenant_id)).mappings().all()
            rows[name] = sorted(json.dumps(dict(row), default=str, sort_keys=True) for row in result)
        db.session.commit()
    for model, column in ((Tenant, Tenant.id), (TenantDomain, TenantDomain.tenant_id),
                          (StravaAthleteRoute, StravaAthleteRoute.tenant_id)):
        table = model.__table__
        result = db.session.execute(sa.select(table).where(column == tenant_id)).mappings().all()
        rows[table.name] = sorted(json.dumps(dict(row), default=str, sort_keys=True) for row in result)
    db.session.commit()
    return rows


def differences(before, after):
    changed = {}
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            changed[table] = {"gone": sorted(old - new)[:3], "new": sorted(new - old)[:3]}
    return changed


def response_text(response):
    """Everything a response shows, as lowercase text: the body (a PDF's content streams inflated) and headers."""
    body = response.get_data()
    if response.mimetype == "application/pdf":
        parts = [body]
        for stream in re.findall(rb"stream\r?\n(.*?)endstream", body, re.S):
            try:
                parts.append(zlib.decompress(stream))
            except zlib.error:
                parts.append(stream)
        body = b"\n".join(parts)
    return (body.decode("utf-8", "replace") + "\n" + str(response.headers)).lower()


def print_table(title, header, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"\n{title}")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


# ------------------------------------------------------------------------------------------------ consistency

def totals_problems(challenge_id):
    """How a challenge's totals differ from a recomputation from its results (empty when they agree): every
    participant total is the sum of their results, every team total its members' aggregation, no result
    counts a score unless accepted, and judging everything again from scratch changes no total."""
    from kindstride.activities.evaluation import reevaluate_challenge, resolved_ruleset
    from kindstride.challenges.models import Challenge
    from kindstride.leaderboards.models import ParticipantTotal, TeamTotal

    def totals():
        participants = {row.registration_id: (row.score, row.distance_m, row.activities, row.team_id)
                        for row in db.session.scalars(sa.select(ParticipantTotal)
                                                      .where(ParticipantTotal.challenge_id == challenge_id))}
        teams = {row.team_id: (row.score, row.distance_m, row.members)
                 for row in db.session.scalars(sa.select(TeamTotal).where(TeamTotal.challenge_id == challenge_id))}
        return participants, teams

    found = []
    challenge = db.session.get(Challenge, challenge_id)
    strategy, params = resolved_ruleset(challenge).team_aggregation
    participants, teams = totals()
    for registration_id, (score, distance, count, _team) in participants.items():
        results = db.session.scalars(sa.select(ActivityResult)
                                     .where(ActivityResult.registration_id == registration_id)).all()
        if score != sum(r.score for r in results) or distance != sum(r.counted_distance_m for r in results):
            found.append(f"registration {registration_id}: total {score}/{distance} is not the sum of its results")
        if count != sum(1 for r in results if r.counted_at is not None):
            found.append(f"registration {registration_id}: {count} activities counted, results say otherwise")
        found += [f"result {r.id}: {r.status} yet scores {r.score}" for r in results
                  if r.status != "accepted" and r.score]
        stale = [r.id for r in results if r.ruleset_version != challenge.ruleset_version]
        if stale:
            found.append(f"registration {registration_id}: results {stale[:5]} judged by an older ruleset")
    for team_id, (score, distance, members) in teams.items():
        member_scores = [p[0] for p in participants.values() if p[3] == team_id]
        if members != len(member_scores) or distance != sum(p[1] for p in participants.values() if p[3] == team_id):
            found.append(f"team {team_id}: members or distance differ from its members'")
        if score != (strategy.aggregate(member_scores, params) if member_scores else 0):
            found.append(f"team {team_id}: score {score} is not its members' aggregation")
    before = totals()
    reevaluate_challenge(challenge_id, challenge.ruleset_version)
    db.session.flush()
    if totals() != before:
        found.append("judging every activity again from scratch changes the totals")
    db.session.rollback()
    return found
