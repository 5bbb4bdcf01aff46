"""A corpus of bad input against uploads, forms and the API.

Hostile files (XML entity expansion and external entities, a zip bomb, 0 bytes, 50 MB, more than the request
limit, wrong extensions, tricky file names) are refused per file with a reason, while the good file sent with
them is stored. Every text field that a page shows back gets the same hostile values (script and HTML
injection, SQL, control and binary characters, NUL, a lone surrogate, right-to-left override, zero-width and
combining characters, emoji, very long text): each is refused with a 4xx naming the field, or stored and shown
escaped: no page of the site ever contains one of the injected tags raw. Nothing stored before is lost.
"""

import io
import re
import zipfile
from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.activities.models import FLAGGED, REJECTED, ActivityResult
from kindstride.activities.services import add_entered
from kindstride.challenges import services as challenges
from kindstride.db import db, tenant_tables, utcnow
from kindstride.fundraising.models import Donation
from kindstride.ledger.services import Posting, record
from kindstride.payments.models import Payment
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs
from tests.support.sweep import (
    NOW,
    OFFLINE_GATEWAYS,
    PASSWORD,
    PLUGINS,
    Caller,
    gpx_run,
    host_of,
    populate,
    print_table,
    send,
    session_of,
)

SCRIPT = "<script>alert('ks-xss-1')</script>"
HOSTILE = {
    "script": SCRIPT,
    "attribute": "\"'><img src=x onerror=alert('ks-xss-2')>",
    "html": "<b>ks-bold</b><a href='javascript:alert(3)'>ks-link</a>",
    "sql": "'; DROP TABLE users; --",
    "sql-or": "x' OR '1'='1",
    "rtl-override": "evil\u202egpj.exe\u202c",
    "zero-width": "ze\u200bro\u200dwi\ufeffdth",
    "combining": "Z" + "\u0336\u0301\u0489" * 40,
    "emoji": "🏃‍♀️🏳️‍🌈👨‍👩‍👧‍👦",
    "control": "ctl\x01\x07\x08\x1b[31mred\x7f",
    "newlines": "line1\r\nBcc: victim@example.com\r\n",
    "binary": bytes(range(1, 256)).decode("latin-1"),
    "nul": "nul\x00byte",
    "surrogate": "lone \ud800 surrogate",
    "long": "L" * 20_000,
}
# No database column can hold these: they must be refused (a 4xx naming the field), never stored.
MUST_REFUSE = {"nul", "surrogate"}
# Seen raw in an HTML page, any of these would be markup we did not write.
RAW_MARKUP = ("<script>alert('ks-xss", "<img src=x onerror", "<b>ks-bold</b>", "<a href='javascript:")
GENERAL = "_form"
# Fields that name something to look up: no hostile value can match, so every one is refused.
LOOKUPS = {"API join code", "API team id as text"}


@pytest.fixture
def site(make_app):
    app = make_app(PLUGINS=PLUGINS, RATELIMIT_ENABLED=False, GATEWAY_ENDPOINTS=OFFLINE_GATEWAYS)
    with app.app_context():
        # VND: the currency VNPay charges, so the donate form and API reach the donation itself.
        world = populate(app, "alpha", "qqalphamarkqq", currency="VND")
        with tenant_scope(world.tenant_id):
            # Rejected activities to appeal and flagged ones to decide, one per hostile value and channel.
            runner2 = db.session.get(User, world.users["runner2"])
            for index in range(2 * len(HOSTILE)):
                add_entered(runner2, {"sport": "run", "start": (NOW - timedelta(hours=40, minutes=index * 40))
                                      .isoformat(), "moving_s": 4 * 150, "distance_m": 4000, "has_gps": True,
                                      "split_paces_s_per_km": [150] * 4}, "api")
                add_entered(runner2, {"sport": "run", "start": (NOW - timedelta(hours=11, minutes=index * 20))
                                      .isoformat(), "moving_s": 3 * 360, "distance_m": 3000, "has_gps": True}, "api")
            db.session.commit()
        run_queued_jobs(app)
        yield app, world


def _results(world, status):
    with tenant_scope(world.tenant_id):
        ids = db.session.scalars(sa.select(ActivityResult.id).where(
            ActivityResult.registration_id == world.registration_ids[1], ActivityResult.status == status,
            ActivityResult.appeal_state.is_(None)).order_by(ActivityResult.id)).all()
        db.session.commit()
    return list(ids)


def _rows(tenant_id):
    """(table, id) of every row of the tenant."""
    found = set()
    with tenant_scope(tenant_id):
        for name in tenant_tables():
            table = db.metadata.tables[name]
            found |= {(name, row) for row in db.session.scalars(sa.select(table.c.id))}
        db.session.commit()
    return found


def _named(response, fields, api):
    """Does a refusal name the field (one of them)? The API says "field: message" or lists the field under
    "errors"; a page marks the field (e-<field>) or says "field: message"."""
    fields = (fields,) if isinstance(fields, str) else fields
    if api:
        body = response.get_json(silent=True) or {}
        said = str(body.get("message", "")) + " " + str(body.get("errors", ""))
        return any(f"{field}:" in said or f"'{field}'" in said for field in fields)
    text = response.get_data(as_text=True)
    return any(f'id="e-{field}"' in text or f"{field}:" in text for field in fields)


def _said(response):
    """What a refusal says: the API's message, or a page's error lines with the field they belong to."""
    if response.mimetype == "application/json":
        return (response.get_json(silent=True) or {}).get("message")
    return re.findall(r'class="ks-error[^"]*"(?: id="([^"]*)")?[^>]*>([^<]*)<', response.get_data(as_text=True))


# ------------------------------------------------------------------------------------------------ uploads

def _zip(members, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _hostile_files():
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
                         for n in range(1, 10))
              + b']><gpx version="1.1"><trk><name>&lol9;</name></trk></gpx>')
    external = (b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                b'<gpx version="1.1"><trk><name>&xxe;</name></trk></gpx>')
    tcx_external = (b'<?xml version="1.0"?><!DOCTYPE TrainingCenterDatabase [<!ENTITY xxe SYSTEM '
                    b'"http://127.0.0.1:9/x">]><TrainingCenterDatabase>&xxe;</TrainingCenterDatabase>')
    bomb = _zip([("huge.gpx", b"\0" * (30 * 1024 * 1024))])
    nested = _zip([("inner.zip", _zip([("a.gpx", b"<gpx/>")]))])
    return {
        "billion-laughs.gpx": (laughs, "xml_entities_forbidden"),
        "external-entity.gpx": (external, "xml_entities_forbidden"),
        "external-entity.tcx": (tcx_external, "xml_entities_forbidden"),
        "zip-bomb.zip": (bomb, None),  # the member is refused: zip_bomb (checked below by its own name)
        "nested.zip": (nested, None),
        "empty.fit": (b"", "empty_file"),
        "fifty-megabytes.fit": (b"\0" * (50 * 1024 * 1024), "too_large"),
        "photo.gpx": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "unknown_format"),
        "notes.txt": (b"just some notes", "unknown_format"),
        "truncated.gpx": (gpx_run(NOW - timedelta(hours=30))[:3000], "corrupt_file"),
        "gzip-of-nothing.fit.gz": (b"\x1f\x8b\x08\x00" + b"\0" * 20, "corrupt_file"),
    }


def test_hostile_files_are_refused_per_file_and_the_good_one_is_stored(site):
    app, world = site
    runner = Caller("runner", world.host, *session_of(app, world.host, world.emails["runner"]),
                    bearer=world.tokens["runner"])
    good = gpx_run(NOW - timedelta(hours=3), km=5, name=SCRIPT)
    wrong_extension = gpx_run(NOW - timedelta(hours=50), km=3)
    hostile = _hostile_files()
    tricky_names = {
        "../../etc/passwd.gpx": gpx_run(NOW - timedelta(hours=60), km=2),
        f"{SCRIPT}.gpx": gpx_run(NOW - timedelta(hours=62), km=2),
        "evil\u202egpx.exe": gpx_run(NOW - timedelta(hours=64), km=2),
        "L" * 1000 + ".gpx": gpx_run(NOW - timedelta(hours=66), km=2),
    }
    for channel in ("api", "page"):
        files = [(io.BytesIO(data), name) for name, (data, _code) in hostile.items()]
        files += [(io.BytesIO(good), f"good-{channel}.gpx"), (io.BytesIO(wrong_extension), f"run-{channel}.txt")]
        files += [(io.BytesIO(data), name) for name, data in tricky_names.items()]
        path = "/api/v1/activities/upload" if channel == "api" else "/activities/upload"
        response = send(app, runner, "POST", path, files={"files": files})
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        text = response.get_data(as_text=True)
        if channel == "api":
            outcomes = {item["file"]: item for item in response.get_json()}
            for name, (_data, code) in hostile.items():
                if code:
                    assert outcomes[name]["code"] == code and outcomes[name]["activity_id"] is None, outcomes[name]
            assert outcomes["huge.gpx"]["code"] == "zip_bomb"
            assert outcomes["inner.zip"]["code"] == "nested_archive"
            assert outcomes[f"good-{channel}.gpx"]["activity_id"]
            assert outcomes[f"run-{channel}.txt"]["activity_id"]  # recognised by its content, not its name
            stored_names = [item["file"] for item in response.get_json() if item["activity_id"]]
            assert "passwd.gpx" in stored_names and all("/" not in name for name in outcomes)
        else:
            refused = re.findall(r'<li class="ks-error">([^<]*)</li>', text)
            imported = re.findall(r'<li class="ks-ok">([^:<]*):', text)
            for name, (_data, code) in hostile.items():
                if code:
                    assert any(line.startswith(f"{name}: ") for line in refused), (name, refused)
            assert any(line.startswith("huge.gpx: ") for line in refused)
            assert f"good-{channel}.gpx" in imported and f"run-{channel}.txt" in imported, imported
        assert "root:x:0" not in text  # no external entity was ever read
        for raw in RAW_MARKUP:
            assert raw not in text
    # More than the request limit: a clean 413, not a 500, and nothing is stored.
    too_big = b"\0" * (app.config["MAX_CONTENT_LENGTH"] + 1024)
    for path in ("/api/v1/activities/upload", "/activities/upload"):
        response = send(app, runner, "POST", path, files={"files": [(io.BytesIO(too_big), "huge.fit")]})
        assert response.status_code == 413, (path, response.status_code)
        if path.startswith("/api/"):
            assert response.get_json()["code"] == 413
        else:
            assert "Too much at once" in response.get_data(as_text=True)
    # The good files are there, once (the second channel's "good" file is a separate recording).
    listing = send(app, runner, "GET", "/activities")
    assert listing.status_code == 200
    for raw in RAW_MARKUP:
        assert raw not in listing.get_data(as_text=True)


# ------------------------------------------------------------------------------------------------ text fields

def _window(index):
    return {"registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=1, minutes=index)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat()}


def _local(moment):
    return moment.strftime("%Y-%m-%dT%H:%M")


def _targets(world, appeals, flagged):
    """(name, who, method, path, data(index, value), field, api) of every text field a page shows back."""
    division, team = world.division_ids[0], world.team_ids[0]
    return [
        # pages
        ("sign-up name", "anonymous", "POST", "/signup",
         lambda i, v: {"name": v, "email": f"hostile{i}@example.com", "password": PASSWORD}, "name", False),
        ("API token name", "runner", "POST", "/account/tokens",
         lambda i, v: {"name": v, "scopes": "read", "days": "5"}, "name", False),
        ("new team name", "runner", "POST", "/challenges/run/team",
         lambda i, v: {"mode": "create", "new_team": f"{v}{i}", "division_id": division}, "new_team", False),
        ("manual entry title", "runner", "POST", "/activities/new",
         lambda i, v: {"sport": "run", "date": (NOW - timedelta(days=2)).strftime("%Y-%m-%d"),
                       "time": f"{i % 24:02d}:{i % 60:02d}", "duration": "0:30:00", "distance_km": f"5.{i}",
                       "title": v}, "title", False),
        ("appeal message", "runner2", "POST", lambda i: f"/results/{appeals[i]}/appeal",
         lambda i, v: {"message": v}, "message", False),
        ("moderator's comment", "admin", "POST", lambda i: f"/admin/challenges/run/review/{flagged[i]}",
         lambda i, v: {"decision": "rejected", "comment": v}, "comment", False),
        ("challenge title", "admin", "POST", "/admin/challenges/new",
         lambda i, v: {"slug": f"hostile-title-{i}", "title": v, "description": "d", "sports": ["run"],
                       "timezone": "UTC", "registration_opens_at": _local(NOW - timedelta(days=1)),
                       "registration_closes_at": _local(NOW + timedelta(days=9)),
                       "counting_start": _local(NOW - timedelta(days=1)),
                       "counting_end": _local(NOW + timedelta(days=9)), "allow_individual": "1",
                       "preset": "company-month"}, "title", False),
        ("challenge description", "admin", "POST", "/admin/challenges/new",
         lambda i, v: {"slug": f"hostile-text-{i}", "title": f"Text {i}", "description": v, "sports": ["run"],
                       "timezone": "UTC", "registration_opens_at": _local(NOW - timedelta(days=1)),
                       "registration_closes_at": _local(NOW + timedelta(days=9)),
                       "counting_start": _local(NOW - timedelta(days=1)),
                       "counting_end": _local(NOW + timedelta(days=9)), "allow_individual": "1",
                       "divisions": f"{v}\r\nSecond", "allow_teams": "1",
                       "preset": "company-month"}, ("description", "divisions"), False),
        ("ruleset note", "admin", "POST", "/admin/challenges/alpha-only/ruleset",
         lambda i, v: {"mode": "json", "action": "save", "ruleset_json": RULESET, "note": v}, "note", False),
        ("donor name", "anonymous", "POST", "/challenges/run/donate",
         lambda i, v: {"preset": "50000", "gateway": "vnpay", "donor_name": v, "donor_email": "d@example.com",
                       "idempotency_key": f"hostile-donor-name-{i:04d}"}, "donor_name", False),
        ("donor message", "anonymous", "POST", "/challenges/run/donate",
         lambda i, v: {"preset": "50000", "gateway": "vnpay", "donor_name": "Donor", "donor_email": "d@example.com",
                       "message": v, "idempotency_key": f"hostile-donor-message-{i:04d}"}, "message", False),
        ("fundraising story", "runner", "POST", "/challenges/run/my-page",
         lambda i, v: {"goal": "100", "story": v}, "story", False),
        ("sponsor name", "sponsor", "POST", "/challenges/run/pledges",
         lambda i, v: {"rule": "per_km", "p.pledge.per_km.rate_per_km": "10", "sponsor_name": v},
         "sponsor_name", False),
        ("beneficiary name", "admin", "POST", "/admin/money/run/beneficiaries",
         lambda i, v: {"name": f"{v}{i}", "description": "d"}, "name", False),
        ("beneficiary description", "admin", "POST", "/admin/money/run/beneficiaries",
         lambda i, v: {"name": f"Charity {i}", "description": v}, "description", False),
        ("tagline", "admin", "POST", "/admin/branding",
         lambda i, v: {"primary_color": "#1f5fbf", "accent_color": "#f28c28", "tagline": v, "about": "a"},
         "tagline", False),
        ("about text", "admin", "POST", "/admin/branding",
         lambda i, v: {"primary_color": "#1f5fbf", "accent_color": "#f28c28", "tagline": "t", "about": v},
         "about", False),
        ("tenant name", "operator", "POST", "/operator/tenants",
         lambda i, v: {"slug": f"hostile{i}", "name": v, "locale": "en", "currency": "USD", "timezone": "UTC"},
         "name", False),
        # the API
        ("API activity title", "runner", "POST", "/api/v1/activities",
         lambda i, v: {"sport": "run", "start": (NOW - timedelta(days=3, minutes=i * 50)).isoformat(),
                       "moving_s": 1800, "distance_m": 5000, "title": v}, "title", True),
        ("API appeal", "runner2", "POST", lambda i: f"/api/v1/results/{appeals[len(HOSTILE) + i]}/appeal",
         lambda i, v: {"message": v}, "message", True),
        ("API decision comment", "moderator", "POST",
         lambda i: f"/api/v1/results/{flagged[len(HOSTILE) + i]}/decision",
         lambda i, v: {"decision": "rejected", "comment": v}, "comment", True),
        ("API challenge title", "admin", "POST", "/api/v1/challenges",
         lambda i, v: {"slug": f"api-hostile-{i}", "title": v, "description": v, "sports": ["run"],
                       "preset": "company-month", **_window(i)}, ("title", "description"), True),
        ("API beneficiary", "admin", "POST", "/api/v1/challenges/run/beneficiaries",
         lambda i, v: {"name": f"API {v}{i}", "description": v}, ("name", "description"), True),
        ("API donor", "anonymous", "POST", "/api/v1/challenges/run/donations",
         lambda i, v: {"amount": 50_000, "currency": "VND", "gateway": "vnpay", "donor_name": v,
                       "donor_email": "d@example.com", "message": v, "idempotency_key": f"api-hostile-{i:04d}"},
         ("donor_name", "message"), True),
        ("API pledge sponsor name", "sponsor", "POST", "/api/v1/challenges/run/pledges",
         lambda i, v: {"rule": "per_km", "params": {"rate_per_km": 5}, "sponsor_name": v}, "sponsor_name", True),
        ("API team name", "runner", "PATCH", "/api/v1/challenges/run/registration",
         lambda i, v: {"new_team": f"API {v}{i}", "division_id": division}, "new_team", True),
        ("API ruleset note", "admin", "PUT", "/api/v1/challenges/alpha-only/ruleset",
         lambda i, v: {"ruleset": RULESET_DATA, "note": v}, "note", True),
        ("API join code", "runner", "PATCH", "/api/v1/challenges/run/registration",
         lambda i, v: {"join_code": v}, "join_code", True),
        ("API team id as text", "runner", "PATCH", "/api/v1/challenges/run/registration",
         lambda i, v: {"team_id": v}, "team_id", True),
        ("leaderboard search", "anonymous", "GET", lambda i: "/challenges/run/leaderboard",
         lambda i, v: {"q": v}, "q", False),
        ("API leaderboard search", "anonymous", "GET", lambda i: "/api/v1/challenges/run/leaderboard",
         lambda i, v: {"q": v[:100], "team_id": team}, "q", True),
    ]


RULESET_DATA = {"validation": [{"rule": "allowed_sports", "params": {"sports": ["run", "walk"]}}],
                "scoring": {"rule": "distance", "params": {}}, "multipliers": [],
                "team_aggregation": {"rule": "sum", "params": {}}}
RULESET = __import__("json").dumps(RULESET_DATA)


def _crawl(app, callers, seeds, limit=600):
    """Every page reachable by links from the seeds, per caller: (caller name, path, response)."""
    pages = []
    for caller in callers:
        queue, seen = list(seeds.get(caller.name, ["/"])), set()
        while queue and len(seen) < limit:
            path = queue.pop(0)
            if path in seen:
                continue
            seen.add(path)
            response = send(app, caller, "GET", path)
            pages.append((caller.name, path, response))
            if response.mimetype != "text/html":
                continue
            for link in re.findall(r'href="([^"#]+)', response.get_data(as_text=True)):
                link = link.replace("&amp;", "&")
                parts = urlsplit(link)
                if parts.netloc or not link.startswith("/") or link.startswith(("/static/", "/signout")):
                    continue
                if link.endswith((".pdf", ".csv")) or "/operator/tenants/" in link:
                    continue
                if link not in seen:
                    queue.append(link)
    return pages


def test_hostile_text_is_refused_naming_the_field_or_stored_and_shown_escaped(site, capsys):
    app, world = site
    from kindstride.accounts.services import create_operator

    create_operator("op@kindstride.example", "Operator", "operator password")
    db.session.commit()
    before = _rows(world.tenant_id)
    appeals, flagged = _results(world, REJECTED), _results(world, FLAGGED)
    assert len(appeals) >= 2 * len(HOSTILE) and len(flagged) >= 2 * len(HOSTILE)
    cookie = {person: session_of(app, world.host, world.emails[person]) for person in
              ("runner", "runner2", "admin", "sponsor", "moderator")}
    callers = {person: Caller(person, world.host, *cookie[person], bearer=world.tokens[person]) for person in cookie}
    callers["anonymous"] = Caller("anonymous", world.host, *session_of(app, world.host))
    platform = host_of(None)
    callers["operator"] = Caller("operator", platform, *session_of(app, platform, "op@kindstride.example",
                                                                   "operator password", operator=True))
    outcomes, problems, tried = Counter(), [], 0
    for name, who, method, path, data, field, api in _targets(world, appeals, flagged):
        statuses = Counter()
        for index, (label, value) in enumerate(HOSTILE.items()):
            if label == "surrogate" and (not api or method == "GET"):
                continue  # only JSON can carry one ("\ud800"): forms and URLs are UTF-8, which has none
            target = path(index) if callable(path) else path
            body = data(index, value)
            if method == "GET":
                response = send(app, callers[who], method, target, query=body)
            elif api:
                response = send(app, callers[who], method, target, json_body=body)
            else:
                response = send(app, callers[who], method, target, form=body)
            tried += 1
            status = response.status_code
            where = f"{name} <- {label}: {status}"
            if status >= 500:
                problems.append(f"{where} (a server error)")
            elif label in MUST_REFUSE and status < 400:
                problems.append(f"{where} (stored a value no column can hold)")
            elif (status in (400, 422) and method != "GET" and not _named(response, field, api)
                  and not _named(response, GENERAL, api)):
                problems.append(f"{where} (refused without naming {field}): {_said(response)}")
            if response.mimetype == "text/html":
                for raw in RAW_MARKUP:
                    if raw in response.get_data(as_text=True):
                        problems.append(f"{where} (the answer shows {raw!r} raw)")
            outcomes["refused (4xx)" if 400 <= status < 500 else "accepted"] += 1
            statuses[status] += 1
        # The target itself works: most hostile values are taken (stored, or found nothing for a search).
        if name not in LOOKUPS and not any(status < 400 for status in statuses):
            problems.append(f"{name}: nothing was accepted ({dict(statuses)}): the test does not reach it")
    assert not problems, "\n".join(problems)

    # Donations show on public pages once paid: settle them as the gateway would have.
    with tenant_scope(world.tenant_id):
        for payment in db.session.scalars(sa.select(Payment).where(Payment.status != "succeeded")):
            payment.status = "succeeded"
            record("payment", f"payment:{payment.reference}:captured", payment.currency,
                   [Posting("gateway:vnpay", payment.amount), Posting(payment.income_account, -payment.amount)])
        db.session.commit()
    run_queued_jobs(app)

    # Every page, as everyone: not one injected tag raw, and the injected text is there, escaped.
    seeds = {"admin": ["/", "/admin/challenges/", "/admin/members/", "/admin/money/", "/admin/branding",
                       "/admin/challenges/run/review", "/admin/challenges/alpha-only/ruleset",
                       "/admin/money/run/beneficiaries", "/admin/money/run/pledges", "/admin/money/payments"],
             "runner": ["/", "/activities", "/account", "/challenges/run/my-page"],
             "runner2": ["/activities"], "sponsor": ["/sponsor/pledges"], "anonymous": ["/"],
             "operator": ["/operator/"]}
    pages = _crawl(app, [callers[name] for name in seeds], seeds)
    raw_found = [f"{who} {path}: {raw!r}" for who, path, response in pages if response.mimetype == "text/html"
                 for raw in RAW_MARKUP if raw in response.get_data(as_text=True)]
    errors = [f"{who} {path}: {response.status_code}" for who, path, response in pages
              if response.status_code >= 500]
    escaped = sum("&lt;script&gt;alert(&#39;ks-xss-1&#39;)&lt;/script&gt;" in response.get_data(as_text=True)
                  for _who, _path, response in pages)
    with capsys.disabled():
        print_table("Bad input: hostile text in every field that is shown back",
                    ["fields", "values", "submissions", "refused 4xx", "stored", "pages checked",
                     "pages showing it escaped"],
                    [(len(_targets(world, appeals, flagged)), len(HOSTILE), tried, outcomes["refused (4xx)"],
                      outcomes["accepted"], len(pages), escaped)])
    assert not errors, errors
    assert not raw_found, "\n".join(raw_found[:20])
    assert escaped >= 10  # the script text is shown, escaped, on many pages
    # Nothing that was there before is gone.
    assert not before - _rows(world.tenant_id)


def test_hostile_names_on_leaderboards_and_certificates(site):
    """People whose names are hostile, with counted kilometres: the leaderboard, the team page and the
    certificate (PDF and its public check page) show them safely."""
    app, world = site
    created = {}
    with tenant_scope(world.tenant_id):
        run = challenges.get_challenge("run")
        for index, (label, value) in enumerate(HOSTILE.items()):
            if label in MUST_REFUSE:
                continue
            user = accounts.sign_up(f"named{index}@example.com", value[:200], PASSWORD)
            user.email_confirmed_at = utcnow()
            challenges.register(run, user, {"team_id": world.team_ids[1]})
            add_entered(user, {"sport": "run", "start": (NOW - timedelta(hours=5, minutes=index)).isoformat(),
                               "moving_s": 5 * 330, "distance_m": 5000, "has_gps": True,
                               "split_paces_s_per_km": [330] * 5}, "api")
            created[label] = f"named{index}@example.com"
        db.session.commit()
    run_queued_jobs(app)
    anonymous = Caller("anonymous", world.host)
    for path in ("/challenges/run", "/challenges/run/leaderboard", f"/challenges/run/teams/{world.team_ids[1]}",
                 "/challenges/run/teams", "/api/v1/challenges/run/leaderboard"):
        response = send(app, anonymous, "GET", path)
        assert response.status_code == 200, path
        for raw in RAW_MARKUP:
            assert raw not in response.get_data(as_text=True) or response.mimetype != "text/html", (path, raw)
    for label, email in created.items():
        person = Caller(label, world.host, *session_of(app, world.host, email))
        pdf = send(app, person, "GET", "/challenges/run/certificate.pdf")
        assert pdf.status_code == 200 and pdf.get_data().startswith(b"%PDF"), (label, pdf.status_code)
    with tenant_scope(world.tenant_id):
        from kindstride.challenges.certificates import certificate_code

        registration = db.session.scalar(sa.select(challenges.Registration).where(
            challenges.Registration.display_name == SCRIPT))
        code = certificate_code(registration)
        db.session.commit()
    page = send(app, anonymous, "GET", f"/certificates/{code}")
    assert page.status_code == 200
    assert SCRIPT not in page.get_data(as_text=True)
    assert "&lt;script&gt;" in page.get_data(as_text=True)


def test_malformed_requests_are_4xx_not_5xx(site):
    app, world = site
    runner = Caller("runner", world.host, *session_of(app, world.host, world.emails["runner"]),
                    bearer=world.tokens["runner"])
    client = app.test_client(use_cookies=False)
    client.on(world.host)
    auth = {"Authorization": f"Bearer {world.tokens['runner']}"}
    bodies = {
        "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
        "invalid UTF-8": b'{"title": "\xff\xfe\xfa"}',
        "truncated JSON": b'{"sport": "run", "start": ',
        "a JSON string": b'"just a string"',
        "a JSON number past every limit": b'{"moving_s": 1e999999, "distance_m": 12345678901234567890123}',
        "NUL in a key": b'{"ti\\u0000tle": "x"}',
        "binary": bytes(range(256)) * 16,
    }
    for label, body in bodies.items():
        response = client.post("/api/v1/activities", data=body, headers={**auth, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (label, response.status_code, response.get_data(as_text=True)[:200])
    for label, body in (("form with binary", bytes(range(1, 256)) * 4), ("form with NUL", b"title=a%00b")):
        response = client.post("/activities/new", data=body, headers={
            "Cookie": f"kindstride_session={runner.cookie}", "Content-Type": "application/x-www-form-urlencoded"})
        assert 400 <= response.status_code < 500, (label, response.status_code)
    # Query strings: NUL, huge numbers, arrays where one value is expected, on pages and the API.
    for path in ("/challenges/run/leaderboard?q=%00&page=99999999999999999999",
                 "/challenges/run/teams?division_id=%00&page=-5",
                 "/api/v1/challenges/run/leaderboard?page=0&team_id=99999999999999999999999",
                 "/api/v1/challenges/run/leaderboard?gender=%00", "/admin/members/?q=%00%ff&page=1e9",
                 f"/challenges/run/donate?team=%00&participant={2**70}"):
        response = send(app, runner, "GET", path)
        assert response.status_code < 500, (path, response.status_code)
    # Nothing of the donations changed in all this.
    with tenant_scope(world.tenant_id):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Donation)) == 2
        db.session.commit()
