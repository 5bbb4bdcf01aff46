"""Strava end to end against a fake Strava on 127.0.0.1: connecting through OAuth, the webhook handshake and
events, importing with stravalib in jobs, token refresh, revoked access, deletions and tenant isolation."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.activities import strava
from kindstride.activities.models import Activity, ActivityResult
from kindstride.activities.strava_models import StravaAthleteRoute, StravaConnection
from kindstride.crypto import secrets_box
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.conftest import sign_in
from tests.support.fake_strava import activity_json, handshake, push_event, start_fake_strava
from tests.support.i18n import vi
from tests.support.jobs import run_queued_jobs

NOW = datetime.now(UTC).replace(microsecond=0)
YESTERDAY = NOW - timedelta(hours=26)
VERIFY_TOKEN = "strava-verify-token"
AN, BINH = 9001, 9002  # Strava athlete ids


@pytest.fixture
def fake():
    fake = start_fake_strava()
    fake.add_athlete(AN, "An", "Nguyen")
    fake.add_athlete(BINH, "Binh", "Tran")
    yield fake
    fake.stop()


@pytest.fixture
def app(make_app, fake):
    """The app with its Strava settings pointed at the fake (overrides conftest's `app`)."""
    app = make_app(**fake.app_config(verify_token=VERIFY_TOKEN))
    with app.app_context():
        yield app


def _token(tenant_id, user_id, scopes):
    with tenant_scope(tenant_id):
        _record, token = accounts.create_api_token(db.session.get(User, user_id), "test", scopes, 30)
        db.session.commit()
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def site(app, tenants, make_user):
    """Tenant alpha: an admin with a run challenge, and An, registered, signed in on the site."""
    admin = make_user(tenants["alpha"], "admin@alpha.example", roles=("participant", "admin"))
    an = make_user(tenants["alpha"], "an@alpha.example")
    headers = {"admin": _token(tenants["alpha"], admin, ["read", "admin", "activities:write"]),
               "an": _token(tenants["alpha"], an, ["read", "activities:write"])}
    client = app.test_client().on("alpha")
    created = client.post("/api/v1/challenges", headers=headers["admin"], json={
        "slug": "run-2024", "title": "Run 2024", "sports": ["run"], "timezone": "Asia/Ho_Chi_Minh",
        "registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
        "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
        "counting_start": (NOW - timedelta(days=5)).isoformat(),
        "counting_end": (NOW + timedelta(days=19)).isoformat(),
        "preset": "vn-charity-run-2024"})
    assert created.status_code == 201, created.json
    assert client.post("/api/v1/challenges/run-2024/registrations", json={},
                       headers=headers["an"]).status_code == 201
    sign_in(client, "an@alpha.example")
    return client, headers, an


def _connect(client, fake, athlete_id):
    """The browser's round trip: the app -> Strava's consent page (a real HTTP request) -> the callback."""
    fake.authorize_as(athlete_id)
    start = client.get("/strava/connect")
    assert start.status_code == 302, start.get_data(as_text=True)
    location = start.headers["Location"]
    assert location.startswith(f"{fake.oauth_url}/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["scope"] == ["activity:read_all"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [f"http://{client.host}/strava/callback"]
    back = requests.get(location, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["Location"])
    return client.get(f"{callback.path}?{callback.query}")


def _connection(tenant_id):
    db.session.rollback()  # read what the requests and jobs committed, not this session's old copies
    with tenant_scope(tenant_id):
        return db.session.scalar(sa.select(StravaConnection))


def _activities(tenant_id):
    db.session.rollback()
    with tenant_scope(tenant_id):
        return db.session.scalars(sa.select(Activity).order_by(Activity.id)).all()


def _board(client):
    return client.get("/api/v1/challenges/run-2024/leaderboard").json


def _push(fake, app, owner, activity_id, aspect="create", host=None, **values):
    if aspect != "delete" and values:
        fake.add_activity(owner, activity_id, **values)
    response = push_event(app.test_client().on(host), owner, activity_id, aspect_type=aspect)
    assert response.status_code == 200, response.get_data(as_text=True)
    run_queued_jobs(app)
    return response


# -- connecting ----------------------------------------------------------------------------------------------

def test_connecting_stores_the_tokens_encrypted_and_routes_the_athlete(site, fake, tenants):
    client, _headers, an = site
    done = _connect(client, fake, AN)
    assert done.status_code == 302 and done.headers["Location"] == "/account"
    assert "Strava is connected" in client.get("/account").get_data(as_text=True)

    issued = fake.tokens_of(AN)
    connection = _connection(tenants["alpha"])
    assert connection.user_id == an and connection.athlete_id == str(AN)
    assert connection.scope == "read,activity:read_all" and connection.revoked_at is None
    assert connection.expires_at == datetime.fromtimestamp(issued.expires_at, UTC)
    for stored, plain in ((connection.access_token, issued.access_token),
                          (connection.refresh_token, issued.refresh_token)):
        assert plain not in stored and stored.startswith("gAAAA")
        assert secrets_box().decrypt(stored) == plain
    route = db.session.get(StravaAthleteRoute, str(AN))
    assert route.tenant_id == tenants["alpha"]


def test_declining_or_withholding_the_activity_scope_connects_nothing(site, fake, tenants):
    client, _headers, _an = site
    declined = _connect(client, fake, None)
    assert declined.headers["Location"] == "/account"
    assert "Strava was not connected" in client.get("/account").get_data(as_text=True)

    fake.add_athlete(9003, "Chi", "Le", grant_scope="read")  # unticked "view data about your activities"
    _connect(client, fake, 9003)
    assert "Allow kindstride to view your activities" in client.get("/account").get_data(as_text=True)
    assert _connection(tenants["alpha"]) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StravaAthleteRoute)) == 0


def test_a_tampered_state_is_refused(site, fake, tenants):
    client, _headers, _an = site
    fake.authorize_as(AN)
    location = client.get("/strava/connect").headers["Location"]
    callback = urlsplit(requests.get(location, allow_redirects=False, timeout=10).headers["Location"])
    client.get(f"{callback.path}?{callback.query.replace('state=', 'state=x')}")
    assert "could not confirm the connection" in client.get("/account").get_data(as_text=True)
    assert _connection(tenants["alpha"]) is None


def test_connect_needs_a_signed_in_person_on_a_tenant_site(app, fake, tenants):
    anonymous = app.test_client().on("alpha").get("/strava/connect")
    assert anonymous.status_code == 302 and "/signin" in anonymous.headers["Location"]
    assert app.test_client().on(None).get("/strava/connect").status_code == 404


def test_disconnecting_deauthorizes_at_strava_behind_csrf(site, fake, tenants):
    client, _headers, _an = site
    _connect(client, fake, AN)
    assert client.post("/strava/disconnect").status_code == 400  # no CSRF token
    assert _connection(tenants["alpha"]).is_active

    done = client.submit("/strava/disconnect", {}, form_path="/account")
    assert done.status_code == 302 and done.headers["Location"] == "/account"
    assert fake.calls["POST /oauth/deauthorize"] == 1 and fake.tokens_of(AN) is None
    connection = _connection(tenants["alpha"])
    assert connection.revoked_at is not None and connection.access_token is None
    assert db.session.get(StravaAthleteRoute, str(AN)) is None

    _connect(client, fake, AN)  # connecting again revives the same connection
    again = _connection(tenants["alpha"])
    assert again.id == connection.id and again.is_active


# -- the webhook ---------------------------------------------------------------------------------------------

def test_the_subscription_handshake_echoes_the_challenge_only_with_our_verify_token(app, tenants):
    for host in (None, "alpha"):  # the bare platform domain, and any tenant host as well
        ok = handshake(app.test_client().on(host), VERIFY_TOKEN, challenge="abc123")
        assert ok.status_code == 200 and ok.json == {"hub.challenge": "abc123"}
    assert handshake(app.test_client().on(None), "guess").status_code == 403
    assert app.test_client().on(None).get("/strava/webhook", query_string={
        "hub.challenge": "x", "hub.verify_token": VERIFY_TOKEN}).status_code == 403  # no hub.mode


def test_an_event_for_an_unknown_athlete_is_acknowledged_and_ignored(app, fake, tenants):
    fake.add_activity(4242, 1, start=YESTERDAY, distance_m=5000)
    response = push_event(app.test_client().on(None), 4242, 1)
    assert response.status_code == 200 and response.json == {"status": "received"}
    run_queued_jobs(app)
    assert fake.calls["GET /api/v3/activities/{id}"] == 0
    assert _activities(tenants["alpha"]) == [] and _activities(tenants["beta"]) == []
    garbage = app.test_client().on(None).post("/strava/webhook", json={"hello": "world"})
    assert garbage.status_code == 400


def test_a_new_activity_is_imported_owner_only_and_judged(site, fake, app, tenants, make_user):
    client, headers, an = site
    _connect(client, fake, AN)
    response = _push(fake, app, AN, 111, start=YESTERDAY, distance_m=10_050, pace_s_per_km=360,
                     name="Hồ Tây loop", device_name="Garmin Forerunner 255")
    assert response.json == {"status": "received"}  # as for an athlete nobody connected: nothing is revealed

    [activity] = _activities(tenants["alpha"])
    assert (activity.user_id, activity.source, activity.sport, activity.owner_only) == (an, "strava", "run", True)
    assert activity.external_id == "111" and activity.title == "Hồ Tây loop"
    assert activity.device == "Garmin Forerunner 255" and activity.has_gps and not activity.is_indoor
    assert activity.start == YESTERDAY and activity.distance_m == 10_050
    assert len(activity.split_paces) == 10 and activity.split_paces[0] == pytest.approx(359.9, abs=0.1)

    activity_id = activity.id
    mine = client.get(f"/api/v1/activities/{activity_id}", headers=headers["an"]).json
    assert mine["source"] == "strava" and mine["results"][0]["status"] == "accepted"
    board = _board(client)
    assert board[0]["distance_m"] == 10_050 and board[0]["name"] == "An"
    # Only the counted kilometres are public: nothing of the Strava activity itself.
    public = client.get("/api/v1/challenges/run-2024/leaderboard").get_data(as_text=True)
    assert "Hồ Tây" not in public and "Garmin" not in public
    other = make_user(tenants["alpha"], "binh@alpha.example")
    assert client.get(f"/api/v1/activities/{activity_id}",
                      headers=_token(tenants["alpha"], other, ["read"])).status_code == 404

    # Strava sends events again; a rename is an update: still one activity, with the new name.
    _push(fake, app, AN, 111)
    fake.add_activity(AN, 111, start=YESTERDAY, distance_m=10_050, pace_s_per_km=360, name="Renamed")
    push_event(app.test_client().on(None), AN, 111, aspect_type="update", updates={"title": "Renamed"})
    run_queued_jobs(app)
    [activity] = _activities(tenants["alpha"])
    assert activity.title == "Renamed" and _board(client)[0]["distance_m"] == 10_050


def test_strava_manual_entries_and_sport_types_map_to_our_sources_and_sports(site, fake, app, tenants):
    client, headers, _an = site
    _connect(client, fake, AN)
    _push(fake, app, AN, 201, start=YESTERDAY, distance_m=6000, manual=True, name="Treadmill", device_name=None)
    [manual] = _activities(tenants["alpha"])
    assert manual.source == "manual" and not manual.has_gps and manual.device is None
    verdict = client.get(f"/api/v1/activities/{manual.id}", headers=headers["an"]).json["results"][0]
    assert verdict["status"] == "rejected" and "manual_not_allowed" in [r["code"] for r in verdict["reasons"]]

    from stravalib.model import DetailedActivity

    def mapped(**values):
        body = activity_json(AN, 1, start=YESTERDAY, distance_m=20_000, **values)
        return strava.activity_fields(DetailedActivity.model_validate(body))

    assert (mapped(sport_type="VirtualRide")["sport"], mapped(sport_type="VirtualRide")["is_indoor"]) == ("ride", True)
    assert mapped(sport_type="TrailRun")["sport"] == "run"
    assert mapped(sport_type="Run", trainer=True)["is_indoor"] is True
    assert mapped(sport_type="Walk")["sport"] == "walk" and mapped(sport_type="Hike")["sport"] == "hike"
    assert mapped(sport_type="EBikeRide")["sport"] == "other"  # motor-assisted: never a ride
    assert mapped(sport_type="Yoga")["sport"] == "other"


def test_an_expired_token_is_refreshed_before_the_fetch_and_the_new_pair_is_kept(site, fake, app, tenants):
    client, _headers, _an = site
    _connect(client, fake, AN)
    first = fake.tokens_of(AN)
    fake.expire_tokens(AN)
    with tenant_scope(tenants["alpha"]):
        connection = db.session.scalar(sa.select(StravaConnection))
        connection.expires_at = NOW - timedelta(minutes=1)
        db.session.commit()

    _push(fake, app, AN, 301, start=YESTERDAY, distance_m=5000)
    assert fake.calls["POST /oauth/token"] == 2  # the code exchange, then one refresh
    assert fake.calls["GET /api/v3/activities/{id}"] == 1  # the refresh came first: no wasted 401
    renewed = fake.tokens_of(AN)
    assert renewed.refresh_token != first.refresh_token
    connection = _connection(tenants["alpha"])
    assert secrets_box().decrypt(connection.access_token) == renewed.access_token
    assert secrets_box().decrypt(connection.refresh_token) == renewed.refresh_token
    assert connection.expires_at > NOW and len(_activities(tenants["alpha"])) == 1


def test_a_token_strava_retired_early_is_refreshed_once(site, fake, app, tenants):
    client, _headers, _an = site
    _connect(client, fake, AN)
    fake.expire_tokens(AN)  # Strava says expired; our stored expiry says otherwise
    _push(fake, app, AN, 302, start=YESTERDAY, distance_m=5000)
    assert fake.calls["GET /api/v3/activities/{id}"] == 2 and fake.calls["POST /oauth/token"] == 2
    assert len(_activities(tenants["alpha"])) == 1 and _connection(tenants["alpha"]).is_active


def test_revoked_access_marks_the_connection_revoked_and_stores_nothing(site, fake, app, tenants):
    client, _headers, _an = site
    _connect(client, fake, AN)
    _push(fake, app, AN, 401, start=YESTERDAY, distance_m=8000, name="Before revoking")
    fake.revoke(AN)  # the athlete revokes kindstride in Strava's settings
    _push(fake, app, AN, 402, start=YESTERDAY + timedelta(hours=3), distance_m=5000)

    connection = _connection(tenants["alpha"])
    assert connection.revoked_at is not None
    assert connection.access_token is None and connection.refresh_token is None
    assert db.session.get(StravaAthleteRoute, str(AN)) is None
    [kept] = _activities(tenants["alpha"])
    # Strava's details go with the access; the counted kilometres stay with the results.
    assert kept.external_id == "401" and kept.title == "" and kept.device is None
    assert _board(client)[0]["distance_m"] == 8000
    # Later events are not routed anywhere any more.
    fetched = fake.calls["GET /api/v3/activities/{id}"]
    assert push_event(app.test_client().on(None), AN, 403).json == {"status": "received"}
    run_queued_jobs(app)
    assert fake.calls["GET /api/v3/activities/{id}"] == fetched


def test_a_deauthorization_event_is_checked_with_strava_before_revoking(site, fake, app, tenants):
    client, _headers, _an = site
    _connect(client, fake, AN)
    forged = push_event(app.test_client().on(None), AN, AN, aspect_type="update", object_type="athlete",
                        updates={"authorized": "false"})
    assert forged.json == {"status": "received"}
    run_queued_jobs(app)
    assert _connection(tenants["alpha"]).is_active  # the token still works: the event was not Strava's

    fake.revoke(AN)
    push_event(app.test_client().on(None), AN, AN, aspect_type="update", object_type="athlete",
               updates={"authorized": "false"})
    run_queued_jobs(app)
    assert _connection(tenants["alpha"]).revoked_at is not None


def test_a_deleted_activity_is_removed_and_the_totals_drop(site, fake, app, tenants):
    client, headers, _an = site
    _connect(client, fake, AN)
    _push(fake, app, AN, 501, start=YESTERDAY, distance_m=10_000)
    _push(fake, app, AN, 502, start=YESTERDAY + timedelta(hours=4), distance_m=5000)
    # The same run as 502, also sent from another app through the API: it counts once, as a duplicate.
    api_copy = client.post("/api/v1/activities", headers=headers["an"], json={
        "sport": "run", "start": (YESTERDAY + timedelta(hours=4, minutes=1)).isoformat(), "moving_s": 4 * 360,
        "distance_m": 4000, "has_gps": True, "split_paces_s_per_km": [360] * 4}).json
    run_queued_jobs(app)
    assert _board(client)[0]["distance_m"] == 15_000

    # A forged delete: Strava still has the activity, so nothing goes.
    _push(fake, app, AN, 501, aspect="delete")
    assert len(_activities(tenants["alpha"])) == 3

    fake.delete_activity(501)
    _push(fake, app, AN, 501, aspect="delete")
    assert _board(client)[0]["distance_m"] == 5000
    totals = client.get("/api/v1/challenges/run-2024/totals").json
    assert totals["distance_m"] == 5000 and totals["activities"] == 1
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActivityResult)
                                 .join(Activity, Activity.id == ActivityResult.activity_id)
                                 .where(Activity.external_id == "501")) == 0

    # Deleting 502 frees the API copy, which now counts in its place.
    fake.delete_activity(502)
    _push(fake, app, AN, 502, aspect="delete")
    assert [a.id for a in _activities(tenants["alpha"])] == [api_copy["id"]]
    assert _board(client)[0]["distance_m"] == 4000


def test_rate_limits_and_outages_raise_so_the_job_is_retried(site, fake, app, tenants):
    client, _headers, _an = site
    _connect(client, fake, AN)
    fake.add_activity(AN, 601, start=YESTERDAY, distance_m=5000)
    for status in (429, 503):
        fake.fail_next(status)
        with tenant_scope(tenants["alpha"]), pytest.raises(strava.StravaUnavailable):
            strava.import_strava_activity(str(AN), 601)
        db.session.rollback()
    with tenant_scope(tenants["alpha"]):
        strava.import_strava_activity(str(AN), 601)  # the retry
        db.session.commit()
    assert len(_activities(tenants["alpha"])) == 1 and _connection(tenants["alpha"]).is_active


def test_an_event_for_tenant_a_never_lands_in_tenant_b(site, fake, app, tenants, make_user):
    client, _headers, _an = site
    _connect(client, fake, AN)
    make_user(tenants["beta"], "binh@beta.example")
    beta = app.test_client().on("beta")
    sign_in(beta, "binh@beta.example")
    _connect(beta, fake, BINH)

    # Whatever host Strava calls, the athlete decides the tenant.
    _push(fake, app, AN, 701, host="beta", start=YESTERDAY, distance_m=7000)
    _push(fake, app, BINH, 702, host=None, start=YESTERDAY, distance_m=3000)
    assert [a.external_id for a in _activities(tenants["alpha"])] == ["701"]
    assert [a.external_id for a in _activities(tenants["beta"])] == ["702"]

    # An athlete routed to alpha cannot also be connected on beta: one route per athlete.
    make_user(tenants["beta"], "an@beta.example")
    an_on_beta = app.test_client().on("beta")
    sign_in(an_on_beta, "an@beta.example")
    _connect(an_on_beta, fake, AN)
    refusal = vi("This Strava account is connected on another kindstride site. Disconnect it there first.")
    assert refusal in an_on_beta.get("/account").get_data(as_text=True)
    assert db.session.get(StravaAthleteRoute, str(AN)).tenant_id == tenants["alpha"]
