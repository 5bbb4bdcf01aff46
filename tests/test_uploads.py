"""Uploading real device recordings through the REST API: one outcome per file, the good ones stored and
judged, the bad ones refused with a clear message, and the same run from two files counted once."""

import io
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs
from tests.support.samples import SAMPLES, needs_samples

pytestmark = needs_samples


@pytest.fixture
def runner(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "runner@alpha.example")
    with tenant_scope(tenants["alpha"]):
        user = db.session.get(User, user_id)
        _record, token = accounts.create_api_token(user, "watch", ["read", "activities:write"], 30)
        # A challenge over the years of the sample recordings, without a sync deadline.
        challenge = challenges.create_challenge({
            "slug": "archive", "title": "Archive run", "sports": ["run", "walk", "ride"],
            "registration_opens_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            "registration_closes_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "counting_start": "2010-01-01T00:00:00+00:00", "counting_end": "2030-01-01T00:00:00+00:00",
            "preset": None, "ruleset": {
                "validation": [{"rule": "allowed_sports", "params": {"sports": ["run", "walk", "ride"]}},
                               {"rule": "distance_limits", "params": {"min_m": 1000}}],
                "scoring": {"rule": "distance", "params": {}}, "multipliers": [],
                "team_aggregation": {"rule": "sum", "params": {}}}})
        challenges.register(challenge, user, {})
        db.session.commit()
    client = app.test_client().on("alpha")
    return client, {"Authorization": f"Bearer {token}"}


def _upload(client, headers, *files):
    data = {"files": [(io.BytesIO(content), name) for name, content in files]}
    return client.post("/api/v1/activities/upload", data=data, headers=headers, content_type="multipart/form-data")


def _sample(name):
    return name, (SAMPLES / name).read_bytes()


def test_a_zip_of_real_recordings_with_a_broken_one(app, runner):
    client, headers = runner
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("fit-garmin-fr110-run-5-laps.fit", "tcx-tomtom-run-single-lap.tcx",
                     "gpx-strava-export-run-with-stops.gpx", "fit-strava-android-app-run-broken.fit"):
            bundle.writestr(name, (SAMPLES / name).read_bytes())
    response = _upload(client, headers, ("week.zip", archive.getvalue()))
    assert response.status_code == 200
    outcomes = {item["file"]: item for item in response.json}
    assert len(outcomes) == 4
    assert outcomes["fit-strava-android-app-run-broken.fit"]["code"] == "corrupt_file"
    assert "fit-strava-android-app-run-broken.fit" in outcomes["fit-strava-android-app-run-broken.fit"]["error"]
    stored = [item for item in response.json if item["activity_id"]]
    assert len(stored) == 3
    run_queued_jobs(app)
    board = client.get("/api/v1/challenges/archive/leaderboard").json
    # 4835.38 m (FR110) + 4824.94 m (TomTom) + 12594.65 m (Strava GPX, computed): whole metres counted
    assert board[0]["distance_m"] == pytest.approx(4835 + 4824 + 12594, abs=3 * 0.01 * 12594)
    assert board[0]["activities"] == 3


def test_the_same_run_from_watch_and_export_counts_once(app, runner):
    client, headers = runner
    first = _upload(client, headers, _sample("tcx-strava-export-run-with-stops.tcx")).json[0]
    second = _upload(client, headers, _sample("gpx-strava-export-run-with-stops.gpx")).json[0]
    run_queued_jobs(app)
    results = [client.get(f"/api/v1/activities/{item['activity_id']}", headers=headers).json["results"][0]["status"]
               for item in (first, second)]
    assert sorted(results) == ["accepted", "duplicate"]
    assert client.get("/api/v1/challenges/archive/leaderboard").json[0]["activities"] == 1


def test_the_same_file_twice_is_one_activity(app, runner):
    client, headers = runner
    first = _upload(client, headers, _sample("fit-garmin-fr110-run-5-laps.fit")).json[0]
    again = _upload(client, headers, _sample("fit-garmin-fr110-run-5-laps.fit")).json[0]
    assert first["activity_id"] == again["activity_id"]


def test_hostile_and_empty_files_are_refused_per_file(app, runner):
    client, headers = runner
    bomb = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>' \
           b'<gpx version="1.1"><trk><name>&lol2;</name></trk></gpx>'
    response = _upload(client, headers, ("bomb.gpx", bomb), ("empty.fit", b""), ("notes.txt", b"hello"),
                       _sample("fit-garmin-fr110-run-5-laps.fit"))
    codes = {item["file"]: item["code"] for item in response.json}
    assert codes == {"bomb.gpx": "xml_entities_forbidden", "empty.fit": "empty_file",
                     "notes.txt": "unknown_format", "fit-garmin-fr110-run-5-laps.fit": None}


def test_an_upload_without_files_names_the_field(app, runner):
    client, headers = runner
    response = client.post("/api/v1/activities/upload", data={}, headers=headers,
                           content_type="multipart/form-data")
    assert response.status_code == 422 and "files:" in response.json["message"]
