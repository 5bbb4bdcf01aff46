"""Challenges end to end through the REST API: create from a preset, register, add activities, verdicts,
leaderboards, ruleset versions with a dry run, moderation and appeals, and tenant isolation."""

from datetime import UTC, datetime, timedelta

import pytest

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)


def _token(tenant_id, user_id, scopes):
    with tenant_scope(tenant_id):
        _record, token = accounts.create_api_token(db.session.get(User, user_id), "test", scopes, 30)
        db.session.commit()
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def site(app, tenants, make_user):
    """Tenant alpha with an admin, a moderator and three runners, each with an API token."""
    people = {
        "admin": make_user(tenants["alpha"], "admin@alpha.example", roles=("participant", "admin")),
        "mod": make_user(tenants["alpha"], "mod@alpha.example", roles=("participant", "moderator")),
        "an": make_user(tenants["alpha"], "an@alpha.example"),
        "binh": make_user(tenants["alpha"], "binh@alpha.example"),
        "chi": make_user(tenants["alpha"], "chi@alpha.example"),
    }
    headers = {
        "admin": _token(tenants["alpha"], people["admin"], ["read", "admin", "activities:write"]),
        "mod": _token(tenants["alpha"], people["mod"], ["read", "moderate"]),
    }
    for name in ("an", "binh", "chi"):
        headers[name] = _token(tenants["alpha"], people[name], ["read", "activities:write"])
    client = app.test_client().on("alpha")
    return client, headers, people


def _challenge(client, headers, **overrides):
    body = {
        "slug": "run-2024", "title": "Chạy vì trẻ em 2024", "sports": ["run"],
        "timezone": "Asia/Ho_Chi_Minh",
        "registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
        "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
        "counting_start": (NOW - timedelta(days=5)).isoformat(),
        "counting_end": (NOW + timedelta(days=19)).isoformat(),
        "goal_km": 5000, "divisions": ["Company", "Sports Club", "School"], "team_size_cap": 2,
        "team_switch_policy": "reset", "preset": "vn-charity-run-2024",
    }
    body.update(overrides)
    return client.post("/api/v1/challenges", json=body, headers=headers["admin"])


def _run(client, headers, start, km, pace_s, splits=None, source_headers=None):
    """An API activity: km at a steady pace, with per-km splits."""
    body = {"sport": "run", "start": start.isoformat(), "moving_s": km * pace_s, "distance_m": km * 1000,
            "has_gps": True, "split_paces_s_per_km": splits if splits is not None else [pace_s] * int(km)}
    return client.post("/api/v1/activities", json=body, headers=headers)


def _board(client, **query):
    return client.get("/api/v1/challenges/run-2024/leaderboard", query_string=query).json


def _last_sunday_morning():
    """10:00 in Ho Chi Minh City (UTC+7) on the most recent Sunday that is over."""
    for days_ago in range(1, 8):
        day = (NOW + timedelta(hours=7) - timedelta(days=days_ago)).date()
        if day.weekday() == 6:
            return datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC)
    raise AssertionError("a week always has a Sunday")


def test_admin_creates_a_challenge_and_bad_input_names_the_field(site):
    client, headers, _people = site
    created = _challenge(client, headers)
    assert created.status_code == 201, created.json
    assert created.json["ruleset_version"] == 1 and created.json["goal_m"] == 5_000_000
    ruleset = client.get("/api/v1/challenges/run-2024/ruleset").json["ruleset"]
    assert {entry["rule"] for entry in ruleset["validation"]} >= {"average_pace_window", "split_pace_limit"}

    again = _challenge(client, headers)
    assert again.status_code == 422 and "slug: a challenge 'run-2024' already exists" in again.json["message"]
    bad_window = _challenge(client, headers, slug="x", counting_end=(NOW - timedelta(days=9)).isoformat())
    assert "counting_end: must be after counting_start" in bad_window.json["message"]
    bad_preset = _challenge(client, headers, slug="y", preset="nope")
    assert "preset: unknown preset 'nope'" in bad_preset.json["message"]
    bad_rule = _challenge(client, headers, slug="z", preset=None, ruleset={
        "validation": [{"rule": "distance_limits", "params": {"min_m": -5}}],
        "scoring": {"rule": "distance", "params": {}}, "multipliers": [],
        "team_aggregation": {"rule": "sum", "params": {}}})
    assert bad_rule.status_code == 422 and "ruleset.validation[0].params.min_m" in bad_rule.json["message"]
    participant = client.post("/api/v1/challenges", json={}, headers=headers["an"])
    assert participant.status_code == 403


def test_registration_teams_bibs_and_caps(site):
    client, headers, _people = site
    _challenge(client, headers)
    divisions = client.get("/api/v1/challenges/run-2024/divisions").json
    an = client.post("/api/v1/challenges/run-2024/registrations",
                     json={"new_team": "Team Rocket", "division_id": divisions[0]["id"], "gender": "female"},
                     headers=headers["an"])
    assert an.status_code == 201 and an.json["bib"] == 1
    team_id = an.json["team_id"]
    binh = client.post("/api/v1/challenges/run-2024/registrations", json={"team_id": team_id},
                       headers=headers["binh"])
    assert binh.json["bib"] == 2 and binh.json["team_id"] == team_id
    full = client.post("/api/v1/challenges/run-2024/registrations", json={"team_id": team_id},
                       headers=headers["chi"])
    assert full.status_code == 422 and "is full (2 members)" in full.json["message"]
    twice = client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["an"])
    assert "already registered" in twice.json["message"]
    no_division = client.post("/api/v1/challenges/run-2024/registrations", json={"new_team": "Solo"},
                              headers=headers["chi"])
    assert "division_id: choose one" in no_division.json["message"]


def test_activities_are_judged_scored_and_ranked(site, app):
    client, headers, _people = site
    _challenge(client, headers)
    for name in ("an", "binh", "chi"):
        client.post("/api/v1/challenges/run-2024/registrations", json={"gender": "female" if name != "binh"
                                                                        else "male"}, headers=headers[name])
    yesterday = NOW - timedelta(hours=26)
    assert _run(client, headers["an"], yesterday, 10, 300).status_code == 201
    too_fast = _run(client, headers["binh"], yesterday, 10, 225).json  # 3:45 average: under the 4:00 limit
    fast_split = _run(client, headers["chi"], yesterday, 5, 300, splits=[300, 300, 200, 300, 300]).json
    run_queued_jobs(app)

    verdict = client.get(f"/api/v1/activities/{too_fast['id']}", headers=headers["binh"]).json["results"][0]
    assert verdict["status"] == "rejected" and verdict["score"] == 0
    assert [r["code"] for r in verdict["reasons"]] == ["pace_too_fast"]
    assert verdict["reasons"][0]["message"] == "average pace 3:45 min/km is faster than the 4:00 limit"
    split = client.get(f"/api/v1/activities/{fast_split['id']}", headers=headers["chi"]).json["results"][0]
    assert "split_too_fast" in [r["code"] for r in split["reasons"]]

    board = _board(client)
    assert [(row["name"], row["distance_m"]) for row in board][:1] == [("An", 10000)]
    assert [row["rank"] for row in board] == [1, 2, 3]
    assert _board(client, gender="male")[0]["name"] == "Binh"
    assert _board(client, q="an")[0]["bib"] == 1 and _board(client, q="2")[0]["name"] == "Binh"
    me = client.get("/api/v1/challenges/run-2024/leaderboard/me", headers=headers["an"]).json
    assert me == {"rank": 1, "bib": 1, "score": 10000}
    totals = client.get("/api/v1/challenges/run-2024/totals").json
    assert totals == {"participants": 3, "distance_m": 10000, "score": 10000, "activities": 1, "goal_m": 5_000_000}


def test_sunday_counts_double_in_the_challenge_time_zone(site, app):
    client, headers, _people = site
    sunday = _last_sunday_morning()
    # No sync deadline here, so last Sunday's run still arrives in time whatever day the test runs.
    _challenge(client, headers, preset=None, counting_start=(NOW - timedelta(days=9)).isoformat(), ruleset={
        "validation": [{"rule": "allowed_sports", "params": {"sports": ["run"]}}],
        "scoring": {"rule": "distance", "params": {}},
        "multipliers": [{"rule": "weekday_multiplier", "params": {"weekdays": [6], "factor": "2",
                                                                    "must_end_same_day": True}}],
        "team_aggregation": {"rule": "sum", "params": {}}})
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["an"])
    _run(client, headers["an"], sunday, 5, 360)
    _run(client, headers["an"], sunday + timedelta(days=1), 4, 360)  # Monday: single
    run_queued_jobs(app)
    assert _board(client)[0]["score"] == 14000 and _board(client)[0]["distance_m"] == 9000


def test_the_same_run_from_two_sources_counts_once(site, app, tenants):
    client, headers, people = site
    _challenge(client, headers)
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["an"])
    start = NOW - timedelta(hours=20)
    first = _run(client, headers["an"], start, 8, 330).json
    second = _run(client, headers["an"], start + timedelta(minutes=1), 8, 330).json
    run_queued_jobs(app)
    assert second["duplicate_of_id"] == first["id"]  # same source: the first received counts
    statuses = sorted(client.get(f"/api/v1/activities/{a['id']}", headers=headers["an"]).json["results"][0]["status"]
                      for a in (first, second))
    assert statuses == ["accepted", "duplicate"]
    assert _board(client)[0]["distance_m"] == 8000
    # The watch's file of the same run arrives last: a device beats the API, so it counts and the others follow it.
    from kindstride.activities.services import add_activity

    with tenant_scope(tenants["alpha"]):
        watch = add_activity(db.session.get(User, people["an"]), source="device", sport="run", start=start,
                             elapsed_s=8 * 330 + 30, moving_s=8 * 330, distance_m=8100.0, title="Watch",
                             fingerprint="watch-file", split_paces=[330] * 8)
        db.session.commit()
        watch_id = watch.id
    run_queued_jobs(app)
    standing = {a["id"]: a["duplicate_of_id"]
                for a in (client.get(f"/api/v1/activities/{i}", headers=headers["an"]).json
                          for i in (first["id"], second["id"], watch_id))}
    assert standing == {first["id"]: watch_id, second["id"]: watch_id, watch_id: None}
    assert _board(client)[0]["distance_m"] == 8100


def test_ruleset_change_dry_run_then_reevaluation(site, app):
    client, headers, _people = site
    _challenge(client, headers)
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["an"])
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["binh"])
    _run(client, headers["an"], NOW - timedelta(hours=30), 3, 300)
    _run(client, headers["binh"], NOW - timedelta(hours=30), 12, 300)
    run_queued_jobs(app)
    ruleset = client.get("/api/v1/challenges/run-2024/ruleset").json["ruleset"]
    for entry in ruleset["validation"]:
        if entry["rule"] == "distance_limits":
            entry["params"]["min_m"] = 5000
    dry = client.post("/api/v1/challenges/run-2024/ruleset/dry-run", json={"ruleset": ruleset},
                      headers=headers["admin"])
    assert dry.status_code == 200
    assert dry.json["activities_changed"] == 1 and dry.json["participants_changed"] == 1
    assert dry.json["examples"] == [{"bib": 1, "name": "An", "score_before": 3000, "score_after": 0}]
    assert _board(client)[1]["distance_m"] == 3000  # the dry run changed nothing

    changed = client.put("/api/v1/challenges/run-2024/ruleset", json={"ruleset": ruleset, "note": "5 km minimum"},
                         headers=headers["admin"])
    assert changed.status_code == 200 and changed.json["version"] == 2
    run_queued_jobs(app)
    assert [row["distance_m"] for row in _board(client)] == [12000, 0]
    activities = client.get("/api/v1/activities", headers=headers["an"]).json
    assert activities[0]["results"][0]["ruleset_version"] == 2
    assert activities[0]["results"][0]["reasons"][0]["code"] == "too_short"


def test_moderation_and_a_single_appeal(site, app):
    client, headers, _people = site
    _challenge(client, headers)
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["an"])
    no_splits = _run(client, headers["an"], NOW - timedelta(hours=10), 6, 330, splits=[]).json
    fast = _run(client, headers["an"], NOW - timedelta(hours=30), 6, 200).json
    run_queued_jobs(app)
    queue = client.get("/api/v1/challenges/run-2024/review-queue", headers=headers["mod"]).json
    assert [item["activity_id"] for item in queue] == [no_splits["id"]]
    assert client.get("/api/v1/challenges/run-2024/review-queue", headers=headers["an"]).status_code == 403
    result_id = queue[0]["result_id"]
    no_comment = client.post(f"/api/v1/results/{result_id}/decision", json={"decision": "rejected"},
                             headers=headers["mod"])
    assert no_comment.status_code == 422 and "comment:" in no_comment.json["message"]
    accepted = client.post(f"/api/v1/results/{result_id}/decision", json={"decision": "accepted",
                                                                          "comment": "watch data checked"},
                           headers=headers["mod"])
    assert accepted.status_code == 200 and accepted.json["score"] == 6000
    assert _board(client)[0]["distance_m"] == 6000

    rejected = client.get(f"/api/v1/activities/{fast['id']}", headers=headers["an"]).json["results"][0]
    appeal = client.post(f"/api/v1/results/{rejected['id']}/appeal", json={"message": "GPS glitch"},
                         headers=headers["an"])
    assert appeal.status_code == 200 and appeal.json["appeal_state"] == "open"
    twice = client.post(f"/api/v1/results/{rejected['id']}/appeal", json={"message": "please"},
                        headers=headers["an"])
    assert twice.status_code == 422 and "already appealed once" in twice.json["message"]
    denied = client.post(f"/api/v1/results/{rejected['id']}/decision",
                         json={"decision": "rejected", "comment": "3:20 min/km is not credible"},
                         headers=headers["mod"])
    assert denied.json["appeal_state"] == "denied"


def test_team_switch_after_start_resets_km_when_the_policy_says_so(site, app):
    client, headers, _people = site
    _challenge(client, headers, team_size_cap=30)
    division = client.get("/api/v1/challenges/run-2024/divisions").json[0]["id"]
    first = client.post("/api/v1/challenges/run-2024/registrations", json={"new_team": "Alpha", "division_id":
                                                                            division}, headers=headers["an"]).json
    client.post("/api/v1/challenges/run-2024/registrations", json={"new_team": "Beta", "division_id": division},
                headers=headers["binh"])
    _run(client, headers["an"], NOW - timedelta(hours=30), 7, 330)
    run_queued_jobs(app)
    teams = client.get("/api/v1/challenges/run-2024/leaderboard/teams").json
    assert [(t["name"], t["distance_m"]) for t in teams] == [("Alpha", 7000), ("Beta", 0)]
    beta = next(t["id"] for t in teams if t["name"] == "Beta")
    switched = client.patch("/api/v1/challenges/run-2024/registration", json={"team_id": beta},
                            headers=headers["an"])
    assert switched.status_code == 200 and switched.json["team_id"] == beta != first["team_id"]
    run_queued_jobs(app)
    assert _board(client)[0]["distance_m"] == 0
    assert {t["name"]: (t["distance_m"], t["activities"]) for t in
            client.get("/api/v1/challenges/run-2024/leaderboard/teams").json} == {"Alpha": (0, 0), "Beta": (0, 2)}


def test_another_tenants_challenge_activity_and_result_answer_404(site, app, tenants, make_user):
    client, headers, people = site
    _challenge(client, headers)
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["an"])
    activity = _run(client, headers["an"], NOW - timedelta(hours=5), 5, 330).json
    run_queued_jobs(app)
    result_id = client.get(f"/api/v1/activities/{activity['id']}", headers=headers["an"]).json["results"][0]["id"]
    beta_user = make_user(tenants["beta"], "an@beta.example", roles=("participant", "moderator"))
    beta = app.test_client().on("beta")
    beta_headers = _token(tenants["beta"], beta_user, ["read", "activities:write", "moderate"])
    assert beta.get("/api/v1/challenges/run-2024").status_code == 404
    assert beta.get("/api/v1/challenges/run-2024/leaderboard").status_code == 404
    assert beta.get(f"/api/v1/activities/{activity['id']}", headers=beta_headers).status_code == 404
    assert beta.post(f"/api/v1/results/{result_id}/decision", json={"decision": "rejected", "comment": "x"},
                     headers=beta_headers).status_code == 404
    assert beta.post(f"/api/v1/results/{result_id}/appeal", json={"message": "x"},
                     headers=beta_headers).status_code == 404
    # Another participant of the same tenant cannot read it either.
    assert client.get(f"/api/v1/activities/{activity['id']}", headers=headers["binh"]).status_code == 404
