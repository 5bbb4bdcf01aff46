"""The challenge pages of a tenant's site, through forms as a browser without JavaScript sends them: the
builder, registering with a team, manual entries and appeals, uploads, leaderboards and team pages, the
ruleset editor with a dry run, the review queue, the tenant's language, and tenant isolation."""

import io
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.conftest import sign_in
from tests.support.jobs import run_queued_jobs
from tests.support.samples import SAMPLES

NOW = datetime.now(UTC).replace(microsecond=0)
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")


def _token(tenant_id, user_id):
    with tenant_scope(tenant_id):
        user = db.session.get(User, user_id)
        _record, token = accounts.create_api_token(user, "test", ["read", "activities:write"], 30)
        db.session.commit()
        return {"Authorization": f"Bearer {token}"}


def _local(moment, zone=SAIGON):
    """A moment as a datetime-local input value in the challenge's zone."""
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def builder_form(**overrides):
    form = {
        "title": "Chạy vì trẻ em 2024", "slug": "run-2024", "description": "Every km counts.\nSunday counts double.",
        "sports": ["run"], "timezone": "Asia/Ho_Chi_Minh",
        "registration_opens_at": _local(NOW - timedelta(days=10)),
        "registration_closes_at": _local(NOW + timedelta(days=10)),
        "counting_start": _local(NOW - timedelta(days=5)), "counting_end": _local(NOW + timedelta(days=19)),
        "goal_km": "5000", "divisions": "Company\r\nSports Club\r\nSchool", "team_size_cap": "30",
        "team_switch_policy": "reset", "allow_individual": "1", "allow_teams": "1", "preset": "vn-charity-run-2024",
    }
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def _client(app, slug, email=None):
    client = app.test_client().on(slug)
    if email:
        sign_in(client, email)
    return client


@pytest.fixture
def site(app, tenants, make_user):
    """Tenant alpha: an admin, a moderator and two runners, each signed in on their own client."""
    ids = {
        "admin": make_user(tenants["alpha"], "admin@alpha.example", roles=("participant", "admin")),
        "mod": make_user(tenants["alpha"], "mod@alpha.example", roles=("participant", "moderator")),
        "an": make_user(tenants["alpha"], "an@alpha.example"),
        "binh": make_user(tenants["alpha"], "binh@alpha.example"),
    }
    clients = {name: _client(app, "alpha", f"{name}@alpha.example") for name in ids}
    clients["anonymous"] = _client(app, "alpha")
    tokens = {name: _token(tenants["alpha"], ids[name]) for name in ("an", "binh")}
    return clients, tokens


def create_challenge(admin, **overrides):
    response = admin.submit("/admin/challenges/new", builder_form(**overrides))
    assert response.status_code == 302, _errors(response)
    return response


def _text(response):
    return response.get_data(as_text=True)


def _errors(response):
    return re.findall(r'class="ks-error"[^>]*>([^<]*)<', _text(response))


def _api_run(client, headers, start, km, pace_s, splits=None):
    body = {"sport": "run", "start": start.isoformat(), "moving_s": km * pace_s, "distance_m": km * 1000,
            "has_gps": True, "split_paces_s_per_km": splits if splits is not None else [pace_s] * int(km)}
    response = client.post("/api/v1/activities", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _divisions(client):
    return {d["name"]: d["id"] for d in client.get("/api/v1/challenges/run-2024/divisions").json}


class FormReader(HTMLParser):
    """The fields of one form as a browser would submit them (ticked boxes, chosen options, typed text)."""

    def __init__(self, marker):
        super().__init__()
        self.marker, self.inside, self.fields, self.select, self.textarea = marker, False, [], None, None
        self.forms_seen = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms_seen.append(attrs)
        if tag == "input" and attrs.get("name") == "mode" and attrs.get("value") == self.marker:
            self.inside = True
        if not self.inside:
            return
        if tag == "input" and attrs.get("name"):
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.fields.append((attrs["name"], attrs.get("value", "on")))
            elif kind not in ("submit", "button", "file"):
                self.fields.append((attrs["name"], attrs.get("value", "")))
        elif tag == "select":
            self.select = [attrs["name"], None, None]
        elif tag == "option" and self.select is not None:
            if self.select[2] is None:
                self.select[2] = attrs.get("value", "")
            if "selected" in attrs:
                self.select[1] = attrs.get("value", "")
        elif tag == "textarea":
            self.textarea = [attrs["name"], ""]

    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea[1] += data

    def handle_endtag(self, tag):
        if not self.inside:
            return
        if tag == "select" and self.select:
            name, chosen, first = self.select
            self.fields.append((name, chosen if chosen is not None else first))
            self.select = None
        elif tag == "textarea" and self.textarea:
            self.fields.append(tuple(self.textarea))
            self.textarea = None
        elif tag == "form":
            self.inside = False


def ruleset_form(page, **changes):
    """The generated ruleset form's fields as submitted, with some values changed."""
    reader = FormReader("form")
    reader.feed(_text(page))
    fields = [(name, value) for name, value in reader.fields if name not in changes]
    data = {}
    for name, value in fields + list(changes.items()):
        data.setdefault(name, [])
        data[name].extend(value if isinstance(value, list) else [value])
    data.pop("csrf_token", None)
    return data


# ---------------------------------------------------------------- the builder

def test_admin_builds_a_challenge_from_a_preset_and_bad_input_is_shown_at_the_field(site):
    clients, _tokens = site
    admin = clients["admin"]
    page = admin.get("/admin/challenges/new")
    assert page.status_code == 200
    html = _text(page)
    assert 'value="vn-charity-run-2024"' in html and "average 4:00-15:00 min/km" in html  # the preset described
    assert 'value="Asia/Ho_Chi_Minh"' not in html  # alpha's own zone is the default
    assert 'for="f-counting_start"' in html and 'type="datetime-local"' in html

    bad = admin.submit("/admin/challenges/new", builder_form(slug="Bad Slug", sports=["run", "flying"],
                                                             counting_start="soon"))
    assert bad.status_code == 400
    html = _text(bad)
    assert re.search(r'id="e-counting_start">Enter a date and time.<', html)
    assert 'value="Chạy vì trẻ em 2024"' in html  # what was typed is kept
    bad = admin.submit("/admin/challenges/new", builder_form(slug="Bad Slug", sports=["run", "flying"]))
    assert bad.status_code == 400
    assert re.search(r'id="e-slug">lowercase letters, digits and hyphens<', _text(bad))
    assert re.search(r'id="e-sports">Must be one of', _text(bad))
    window = admin.submit("/admin/challenges/new", builder_form(counting_end=_local(NOW - timedelta(days=9))))
    assert window.status_code == 400
    assert re.search(r'id="e-counting_end">must be after counting_start<', _text(window))
    no_preset = admin.submit("/admin/challenges/new", builder_form(preset=None))
    assert no_preset.status_code == 400 and re.search(r'id="e-preset">choose a preset', _text(no_preset))
    bad_zone = admin.submit("/admin/challenges/new", builder_form(timezone="Mars/Olympus"))
    assert bad_zone.status_code == 400 and "unknown IANA time zone" in _text(bad_zone)

    created = create_challenge(admin)
    assert created.headers["Location"] == "/challenges/run-2024"
    assert "is created" in _text(admin.get("/challenges/run-2024"))
    challenge = admin.get("/api/v1/challenges/run-2024").json
    # The datetime-local inputs are read in the challenge's zone (UTC+7), not the site's (UTC).
    counting_start = datetime.fromisoformat(challenge["counting_start"])
    assert counting_start == (NOW - timedelta(days=5)).replace(second=0)
    assert challenge["goal_m"] == 5_000_000 and challenge["team_switch_policy"] == "reset"
    assert list(_divisions(admin)) == ["Company", "Sports Club", "School"]
    ruleset = admin.get("/api/v1/challenges/run-2024/ruleset").json
    assert ruleset["version"] == 1
    assert "no_manual_entries" in {entry["rule"] for entry in ruleset["ruleset"]["validation"]}

    taken = admin.submit("/admin/challenges/new", builder_form())
    assert taken.status_code == 400
    assert re.search(r'id="e-slug">a challenge [^<]*run-2024[^<]* already exists', _text(taken))
    assert clients["an"].get("/admin/challenges/new").status_code == 403
    assert clients["anonymous"].get("/admin/challenges/new").status_code == 302  # to sign in


# ---------------------------------------------------------------- registering, manual entries, appeals

def test_register_with_a_new_team_then_a_manual_entry_is_rejected_and_appealed_once(site, app):
    clients, _tokens = site
    create_challenge(clients["admin"])
    an = clients["an"]
    challenge_page = _text(an.get("/challenges/run-2024"))
    assert "/challenges/run-2024/register" in challenge_page and "<progress" in challenge_page
    divisions = _divisions(an)

    form = an.get("/challenges/run-2024/register")
    assert form.status_code == 200 and 'name="mode" value="create"' in _text(form)
    unnamed = an.submit("/challenges/run-2024/register", {"mode": "create", "new_team": ""})
    assert unnamed.status_code == 400 and re.search(r'id="e-new_team">Give your team a name', _text(unnamed))
    no_division = an.submit("/challenges/run-2024/register", {"mode": "create", "new_team": "Rocket"})
    assert no_division.status_code == 400
    assert re.search(r'id="e-division_id">choose one of this challenge&#39;s divisions', _text(no_division))
    registered = an.submit("/challenges/run-2024/register", {
        "mode": "create", "new_team": "Rocket", "division_id": str(divisions["Company"]), "gender": "female",
        "birth_year": "1990"})
    assert registered.status_code == 302 and registered.headers["Location"] == "/challenges/run-2024"
    page = _text(an.get("/challenges/run-2024"))
    assert "Your bib number is 1." in page and "Rocket" in page and "Your rank" in page
    again = an.get("/challenges/run-2024/register")
    assert again.status_code == 302

    # A manual entry: bad input first, then one the preset refuses ("no manual entries").
    bad = an.submit("/activities/new", {"sport": "run", "date": "yesterday", "time": "06:30", "duration": "30 min",
                                        "distance_km": "five"})
    assert bad.status_code == 400
    html = _text(bad)
    assert re.search(r'id="e-date">Enter the date', html) and re.search(r'id="e-duration">Enter the moving time', html)
    assert re.search(r'id="e-distance_km">Enter the distance', html)
    future = (NOW + timedelta(days=2)).astimezone(ZoneInfo("UTC"))
    in_future = an.submit("/activities/new", {"sport": "run", "date": future.strftime("%Y-%m-%d"), "time": "06:30",
                                              "duration": "0:30:00", "distance_km": "5"})
    assert in_future.status_code == 400 and re.search(r'id="e-date">is in the future', _text(in_future))
    yesterday = NOW - timedelta(hours=30)
    saved = an.submit("/activities/new", {"sport": "run", "date": yesterday.strftime("%Y-%m-%d"),
                                          "time": yesterday.strftime("%H:%M"), "duration": "0:30:00",
                                          "distance_km": "5,5"})
    assert saved.status_code == 302 and saved.headers["Location"].startswith("/activities#activity-")
    run_queued_jobs(app)
    mine = _text(an.get("/activities"))
    assert "5.5 km" in mine and "0:30:00" in mine and "Not counted" in mine
    assert "manual entries do not count in this challenge" in mine
    result_id = re.search(r'action="/results/(\d+)/appeal"', mine).group(1)

    empty = an.submit(f"/results/{result_id}/appeal", {"message": ""}, form_path="/activities")
    assert empty.status_code == 400 and re.search(r'id="e-message">explain in up to 2000 characters', _text(empty))
    appealed = an.submit(f"/results/{result_id}/appeal", {"message": "My watch died; here is a photo."},
                         form_path="/activities")
    assert appealed.status_code == 302
    mine = _text(an.get("/activities"))
    assert "Your appeal is waiting for a moderator." in mine and "/appeal" not in mine  # the form is gone
    twice = an.post(f"/results/{result_id}/appeal", data={"message": "please", "csrf_token": an.csrf_token("/")})
    assert twice.status_code == 400 and "already appealed once" in _text(twice), _text(twice)
    # Somebody else's result is not found at all.
    other = clients["binh"]
    assert other.post(f"/results/{result_id}/appeal", data={"message": "x", "csrf_token": other.csrf_token("/")}
                      ).status_code == 404
    assert clients["anonymous"].get("/activities").status_code == 302


def test_team_switch_page_explains_the_policy(site, app):
    clients, _tokens = site
    create_challenge(clients["admin"])
    an = clients["an"]
    divisions = _divisions(an)
    an.submit("/challenges/run-2024/register", {"mode": "create", "new_team": "Rocket",
                                                "division_id": str(divisions["School"])})
    binh = clients["binh"]
    binh.submit("/challenges/run-2024/register", {"mode": "alone"})
    page = _text(binh.get("/challenges/run-2024/team"))
    assert "resets your kilometres" in page and "Rocket" in page
    moved = binh.submit("/challenges/run-2024/team", {"mode": "code", "join_code": "NOPE"})
    assert moved.status_code == 400 and re.search(r'id="e-join_code">no team of this challenge has this code',
                                                  _text(moved))
    team_id = re.search(r'<option value="(\d+)"[^>]*>\s*Rocket', page).group(1)
    joined = binh.submit("/challenges/run-2024/team", {"mode": "join", "team_id": team_id})
    assert joined.status_code == 302
    assert "You are now in team Rocket." in _text(binh.get("/challenges/run-2024"))


# ---------------------------------------------------------------- boards and team pages

def test_leaderboard_team_page_and_home_after_an_accepted_activity(site, app):
    clients, tokens = site
    create_challenge(clients["admin"])
    an, binh, anonymous = clients["an"], clients["binh"], clients["anonymous"]
    divisions = _divisions(an)
    an.submit("/challenges/run-2024/register", {"mode": "create", "new_team": "Rocket",
                                                "division_id": str(divisions["Company"]), "gender": "female"})
    team_page = an.get("/challenges/run-2024/teams").get_data(as_text=True)
    team_path = re.search(r'href="(/challenges/run-2024/teams/\d+)">Rocket<', team_page).group(1)
    code = re.search(r"<code>([A-Z0-9]{8})</code>", _text(an.get(team_path))).group(1)
    assert code not in _text(binh.get(team_path)) and code not in _text(anonymous.get(team_path))
    joined = binh.submit("/challenges/run-2024/register", {"mode": "code", "join_code": code.lower(),
                                                           "gender": "male"})
    assert joined.status_code == 302
    assert "Your bib number is 2." in _text(binh.get("/challenges/run-2024"))
    assert code in _text(binh.get(team_path))  # now a member

    _api_run(an, tokens["an"], NOW - timedelta(hours=26), 10, 300)
    _api_run(binh, tokens["binh"], NOW - timedelta(hours=25), 4, 330)
    run_queued_jobs(app)

    board = _text(anonymous.get("/challenges/run-2024/leaderboard"))
    rows = re.findall(r'data-label="Name">(?:<a [^>]*>)?([^<]+)<', board)
    assert rows == ["An", "Binh"] and "10.0" in board and "Rocket" in board
    assert f'data-label="Team"><a href="{team_path}">Rocket</a>' in board  # a runner's team links to its page
    assert re.findall(r'data-label="Name">(?:<a [^>]*>)?([^<]+)<', _text(anonymous.get(
        "/challenges/run-2024/leaderboard", query_string={"gender": "male"}))) == ["Binh"]
    assert re.findall(r'data-label="Name">(?:<a [^>]*>)?([^<]+)<', _text(anonymous.get(
        "/challenges/run-2024/leaderboard", query_string={"q": "2"}))) == ["Binh"]
    assert re.findall(r'data-label="Name">(?:<a [^>]*>)?([^<]+)<', _text(anonymous.get(
        "/challenges/run-2024/leaderboard", query_string={"q": "an", "age_group": "nonsense"}))) == ["An"]
    members = _text(anonymous.get(team_path))
    assert re.findall(r'data-label="Name">(?:<a [^>]*>)?([^<]+)<', members) == ["An", "Binh"] and "14.0" in members
    teams = _text(anonymous.get("/challenges/run-2024/teams", query_string={"division_id": divisions["Company"]}))
    assert "Rocket" in teams
    assert "Rocket" not in _text(anonymous.get("/challenges/run-2024/teams",
                                               query_string={"division_id": divisions["School"]}))

    challenge = _text(an.get("/challenges/run-2024"))
    assert re.search(r"Your rank</dt><dd>1<", challenge) and "Top teams in Company" in challenge
    assert 'aria-current="true"' in challenge  # my row is marked
    assert "Registration is closed" not in challenge and "/register" not in challenge
    home = _text(anonymous.get("/"))
    assert "Chạy vì trẻ em 2024" in home and '<progress id="goal-' in home and "14.0 of 5,000.0 km" in home
    assert anonymous.get("/challenges/run-2024/teams/999999").status_code == 404
    # Numbers too large for the database are simply not found, never a server error.
    huge = "9" * 30
    assert anonymous.get(f"/challenges/run-2024/teams/{huge}").status_code == 404
    assert anonymous.get("/challenges/run-2024/leaderboard", query_string={"q": huge, "page": huge}).status_code == 200
    assert binh.post(f"/results/{huge}/appeal", data={"message": "x", "csrf_token": binh.csrf_token("/")}
                     ).status_code == 404


def test_upload_page_reports_each_file(site, app):
    clients, _tokens = site
    an = clients["an"]
    page = _text(an.get("/activities/upload"))
    assert 'type="file" multiple accept=".fit,.gpx,.tcx,.zip,.gz"' in page
    nothing = an.submit("/activities/upload", {}, content_type="multipart/form-data")
    assert nothing.status_code == 400 and re.search(r'id="e-files">Choose one or more', _text(nothing))
    sample = (SAMPLES / "tcx-tomtom-run-single-lap.tcx").read_bytes()
    uploaded = an.submit("/activities/upload", {"files": [(io.BytesIO(sample), "tomtom.tcx"),
                                                          (io.BytesIO(b"not an activity"), "notes.gpx")]},
                         content_type="multipart/form-data")
    assert uploaded.status_code == 200
    html = _text(uploaded)
    assert re.search(r'tomtom.tcx: <a href="/activities#activity-\d+">imported</a>', html)
    assert re.search(r'class="ks-error">notes.gpx: [^<]+</li>', html)
    assert "4.82 km" in _text(an.get("/activities"))


# ---------------------------------------------------------------- the ruleset editor

def two_runners_judged(clients, tokens, app):
    """The admin's challenge, with An (3 km) and Binh (12 km) registered alone and their runs judged."""
    create_challenge(clients["admin"])
    for name in ("an", "binh"):
        clients[name].submit("/challenges/run-2024/register", {"mode": "alone"})
    _api_run(clients["an"], tokens["an"], NOW - timedelta(hours=30), 3, 300)
    _api_run(clients["binh"], tokens["binh"], NOW - timedelta(hours=30), 12, 300)
    run_queued_jobs(app)


def test_ruleset_editor_generates_forms_dry_runs_and_saves_version_2(site, app):
    clients, tokens = site
    admin = clients["admin"]
    two_runners_judged(clients, tokens, app)

    page = admin.get("/admin/challenges/run-2024/ruleset")
    assert page.status_code == 200
    html = _text(page)
    # Generated from the parameter schemas: numbers, yes/no, a choice, ticks for a list of sports, JSON.
    assert re.search(r'name="p.validation.distance_limits.min_m" value="1000"\s+type="number"', html)
    assert re.search(r'name="p.validation.no_manual_entries.reject_api" value="1"', html)
    assert re.search(r'<select id="f-p.validation.split_pace_limit.outcome"', html)
    assert re.search(r'name="p.validation.allowed_sports.sports" value="run" checked', html)
    assert re.search(r'<textarea id="f-p.validation.average_pace_window.windows"', html)
    assert 'name="pick.scoring" value="distance" checked' in html
    assert "Parameter reference" in html and "Version history" in html

    negative = admin.submit("/admin/challenges/run-2024/ruleset", ruleset_form(
        page, **{"p.validation.distance_limits.min_m": "-5", "action": "dry_run"}))
    assert negative.status_code == 400
    assert re.search(r'id="e-p.validation.distance_limits.min_m">Must be greater than or equal to 0',
                     _text(negative))
    bad_json = admin.submit("/admin/challenges/run-2024/ruleset", ruleset_form(
        page, **{"p.validation.average_pace_window.windows": "{run:", "action": "dry_run"}))
    assert bad_json.status_code == 400 and "This is not valid JSON" in _text(bad_json)

    dry = admin.submit("/admin/challenges/run-2024/ruleset", ruleset_form(
        page, **{"p.validation.distance_limits.min_m": "5000", "action": "dry_run"}))
    assert dry.status_code == 200, _errors(dry)
    html = _text(dry)
    assert re.search(r"Activities that would change</dt><dd>1<", html)
    assert re.search(r"Participants whose score would change</dt><dd>1<", html)
    assert re.search(r'data-label="Name">An</td>\s*<td[^>]*>3,000</td>\s*<td[^>]*>0</td>', html)
    assert 'value="5000"' in html  # the proposal is kept for saving
    assert admin.get("/api/v1/challenges/run-2024/ruleset").json["version"] == 1  # nothing saved

    saved = admin.submit("/admin/challenges/run-2024/ruleset", ruleset_form(
        page, **{"p.validation.distance_limits.min_m": "5000", "action": "save", "note": "5 km minimum"}))
    assert saved.status_code == 302
    run_queued_jobs(app)
    html = _text(admin.get("/admin/challenges/run-2024/ruleset"))
    assert "Version 2 is saved" in html and "5 km minimum" in html and "Current version: 2." in html
    current = admin.get("/api/v1/challenges/run-2024/ruleset").json
    assert current["version"] == 2
    limits = next(e for e in current["ruleset"]["validation"] if e["rule"] == "distance_limits")
    assert limits["params"]["min_m"] == 5000
    assert len(current["ruleset"]["validation"]) == 7  # the other rules kept as they were
    board = _text(clients["anonymous"].get("/challenges/run-2024/leaderboard"))
    assert re.findall(r'data-label="Distance \(km\)" class="ks-num">([^<]+)<', board) == ["12.0", "0.0"]

    as_json = admin.submit("/admin/challenges/run-2024/ruleset", {"mode": "json", "action": "dry_run",
                                                                   "ruleset_json": '{"validation": []}'})
    assert as_json.status_code == 400 and "scoring: is required" in _text(as_json)
    assert clients["mod"].get("/admin/challenges/run-2024/ruleset").status_code == 403


# ---------------------------------------------------------------- the review queue

def test_review_queue_accepting_a_flagged_activity_updates_the_leaderboard(site, app):
    clients, tokens = site
    create_challenge(clients["admin"])
    an, mod = clients["an"], clients["mod"]
    an.submit("/challenges/run-2024/register", {"mode": "alone"})
    _api_run(an, tokens["an"], NOW - timedelta(hours=10), 6, 330, splits=[])  # no splits: flagged
    run_queued_jobs(app)
    assert "Under review" in _text(an.get("/activities"))

    queue = mod.get("/admin/challenges/run-2024/review")
    assert queue.status_code == 200
    html = _text(queue)
    assert "the recording has no per-kilometre data to check" in html and "bib 1" in html
    action = re.search(r'action="(/admin/challenges/run-2024/review/\d+)"', html).group(1)
    form_path = "/admin/challenges/run-2024/review"
    no_reason = mod.submit(action, {"decision": "rejected", "comment": ""}, form_path=form_path)
    assert no_reason.status_code == 400 and re.search(r'id="e-comment">say why the activity is rejected',
                                                      _text(no_reason))
    accepted = mod.submit(action, {"decision": "accepted", "comment": "watch data checked"}, form_path=form_path)
    assert accepted.status_code == 302
    assert "Nothing to review." in _text(mod.get(form_path))
    board = _text(clients["anonymous"].get("/challenges/run-2024/leaderboard"))
    assert re.findall(r'data-label="Distance \(km\)" class="ks-num">([^<]+)<', board) == ["6.0"]
    assert "Counted" in _text(an.get("/activities"))
    assert an.get(form_path).status_code == 403
    listing = _text(mod.get("/admin/challenges/"))
    assert "run-2024" in listing and "/ruleset" not in listing  # moderators review, admins edit rules


# ---------------------------------------------------------------- language and isolation

def test_pages_speak_the_tenants_language_and_other_tenants_slugs_are_404(site, app, tenants, make_user):
    clients, _tokens = site
    create_challenge(clients["admin"])
    beta_admin = make_user(tenants["beta"], "admin@beta.example", roles=("participant", "admin"))
    beta = _client(app, "beta", "admin@beta.example")
    create_challenge(beta, slug="chay-2024", title="Chạy vì trẻ em", goal_km="1000")
    beta.submit("/challenges/chay-2024/register", {"mode": "alone"})
    _api_run(beta, _token(tenants["beta"], beta_admin), NOW - timedelta(hours=20), 12.5, 330,
             splits=[330] * 12)
    run_queued_jobs(app)

    for path in ("/challenges/chay-2024", "/challenges/chay-2024/leaderboard", "/activities", "/activities/new",
                 "/admin/challenges/chay-2024/ruleset", "/admin/challenges/chay-2024/review", "/"):
        page = beta.get(path)
        assert page.status_code == 200, path
        assert 'lang="vi"' in _text(page), path
    leaderboard = _text(beta.get("/challenges/chay-2024/leaderboard"))
    assert "12,5" in leaderboard  # Vietnamese decimals
    assert "Đăng xuất" in leaderboard  # the layout's own strings are translated

    for path in ("/challenges/chay-2024", "/challenges/chay-2024/leaderboard", "/challenges/chay-2024/teams",
                 "/challenges/chay-2024/register", "/admin/challenges/chay-2024/ruleset",
                 "/admin/challenges/chay-2024/review"):
        assert clients["admin"].get(path).status_code == 404, path
    assert beta.get("/challenges/run-2024").status_code == 404
    assert beta.get("/admin/challenges/run-2024/ruleset").status_code == 404
    assert "run-2024" not in _text(beta.get("/"))


def test_register_page_lets_a_runner_pick_the_charity_their_km_raise_money_for(site, app, tenants):
    from kindstride.challenges.models import Registration
    from kindstride.challenges.services import get_challenge
    from kindstride.db import db
    from kindstride.fundraising.services import add_beneficiary
    from kindstride.tenancy.scope import tenant_scope

    clients, _tokens = site
    create_challenge(clients["admin"])
    with tenant_scope(tenants["alpha"]):
        hearts = add_beneficiary(get_challenge("run-2024"), {"name": "Children's Hearts"})
        db.session.commit()
        hearts_id = hearts.id
    page = clients["an"].get("/challenges/run-2024/register")
    assert "Children&#39;s Hearts" in _text(page) and 'for="f-beneficiary_id"' in _text(page)
    done = clients["an"].submit("/challenges/run-2024/register", {"mode": "alone", "beneficiary_id": hearts_id})
    assert done.status_code == 302
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(Registration.beneficiary_id)) == hearts_id
