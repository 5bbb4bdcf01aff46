"""A fake Strava on 127.0.0.1 for tests: the OAuth endpoints and the v3 API calls kindstride makes.

It speaks real HTTP on a free port from a daemon thread (like tests/support/oidc_provider.py), so authlib,
requests and stravalib talk to it exactly as they would to www.strava.com. What it serves, as Strava
documents it (developers.strava.com/docs/authentication, /docs/reference, /docs/webhooks):

- GET  /oauth/authorize     auto-approves the athlete set with `authorize_as` and redirects back with
                            code, state and the granted scope ("read,activity:read_all"); with nobody set,
                            error=access_denied. The redirect_uri's host must be in the callback domain.
- POST /oauth/token         grant_type=authorization_code (single-use code; the answer carries the
                            athlete) and grant_type=refresh_token (a new pair; the old refresh token dies).
                            Client credentials come in the form body; wrong ones get a 401 naming the
                            Application, a bad code or refresh token a 400 naming it.
- POST /oauth/deauthorize   access_token in the body: revokes every token of the athlete.
- GET  /api/v3/activities/<id>, GET /api/v3/athlete: bearer token required (401 when unknown, expired or
                            revoked); an activity of someone else, or deleted, is a 404.

Test controls: `add_activity`, `delete_activity`, `revoke` (the athlete revokes us in Strava's settings),
`expire_tokens`, `fail_next` (e.g. a 429 or 503 for the next API calls), and `calls` (a Counter of
"METHOD /path" with ids replaced by {id}). `handshake` and `push_event` play Strava's side of the webhook
against the app's test client.
"""

import hmac
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from urllib.parse import urlencode, urlsplit

from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

ACCESS_LIFETIME = 6 * 3600  # Strava's access tokens live six hours
# sport_type -> the older `type` Strava still sends alongside it
OLDER_TYPES = {"TrailRun": "Run", "MountainBikeRide": "Ride", "GravelRide": "Ride", "EMountainBikeRide": "EBikeRide"}


@dataclass
class _Athlete:
    id: int
    firstname: str
    lastname: str
    grant_scope: str | None = None  # what the athlete ticks on the consent page; None: everything asked for


@dataclass
class _Token:
    athlete_id: int
    access_token: str
    refresh_token: str
    expires_at: int
    scope: str


@dataclass
class _State:
    athletes: dict = field(default_factory=dict)
    authorizing: int | None = None
    codes: dict = field(default_factory=dict)  # code -> (athlete id, scope, redirect_uri)
    tokens: dict = field(default_factory=dict)  # athlete id -> current _Token
    activities: dict = field(default_factory=dict)  # activity id -> JSON
    failures: list = field(default_factory=list)  # statuses for the next API calls


class FakeStrava:
    def __init__(self, client_id="31337", client_secret="strava-client-secret", callback_domain="kindstride.test"):
        self.client_id = client_id
        self.client_secret = client_secret
        self.callback_domain = callback_domain
        self.calls = Counter()
        self._lock = threading.Lock()
        self._state = _State()
        self._server = make_server("127.0.0.1", 0, self._create_app(), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.oauth_url = f"{self.url}/oauth"
        self.api_url = f"{self.url}/api/v3"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-strava", daemon=True)
        self._thread.start()

    # -- test controls --------------------------------------------------------------------------------------

    def app_config(self, verify_token="strava-verify-token"):
        """The KINDSTRIDE_STRAVA_* settings (as config keys) that point the app here."""
        return {"STRAVA_CLIENT_ID": self.client_id, "STRAVA_CLIENT_SECRET": self.client_secret,
                "STRAVA_VERIFY_TOKEN": verify_token, "STRAVA_API_URL": self.api_url,
                "STRAVA_OAUTH_URL": self.oauth_url}

    def add_athlete(self, athlete_id, firstname="Test", lastname="Athlete", grant_scope=None):
        with self._lock:
            self._state.athletes[int(athlete_id)] = _Athlete(int(athlete_id), firstname, lastname, grant_scope)

    def authorize_as(self, athlete_id):
        """The athlete who approves the next authorization request (None: the next one is declined)."""
        with self._lock:
            self._state.authorizing = None if athlete_id is None else int(athlete_id)

    def tokens_of(self, athlete_id) -> _Token | None:
        with self._lock:
            return self._state.tokens.get(int(athlete_id))

    def add_activity(self, athlete_id, activity_id, **values) -> dict:
        """Store a detailed activity (see `activity_json` for the values) and return its JSON."""
        body = activity_json(athlete_id, activity_id, **values)
        with self._lock:
            self._state.activities[int(activity_id)] = body
        return body

    def delete_activity(self, activity_id):
        with self._lock:
            self._state.activities.pop(int(activity_id), None)

    def revoke(self, athlete_id):
        """The athlete revokes the app in Strava's settings: every token of theirs stops working."""
        with self._lock:
            self._state.tokens.pop(int(athlete_id), None)

    def expire_tokens(self, athlete_id):
        with self._lock:
            token = self._state.tokens[int(athlete_id)]
            token.expires_at = int(time.time()) - 60

    def fail_next(self, status, times=1):
        """Answer the next `times` API calls with this status (429 rate limit, 503 outage...)."""
        with self._lock:
            self._state.failures.extend([status] * times)

    def stop(self):
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()

    # -- the HTTP side ----------------------------------------------------------------------------------------

    def _issue(self, athlete_id, scope):
        token = _Token(athlete_id=athlete_id, access_token=secrets.token_hex(20), refresh_token=secrets.token_hex(20),
                       expires_at=int(time.time()) + ACCESS_LIFETIME, scope=scope)
        self._state.tokens[athlete_id] = token
        return token

    def _bearer(self):
        """The athlete of a valid bearer token, or None."""
        header = request.headers.get("Authorization", "")
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        now = time.time()
        for token in self._state.tokens.values():
            if given and hmac.compare_digest(given, token.access_token) and token.expires_at > now:
                return token
        return None

    def _create_app(self):
        fake = self
        app = Flask(__name__)

        @app.before_request
        def count():
            fake.calls[f"{request.method} {re.sub(r'/[0-9]+', '/{id}', request.path)}"] += 1

        def strava_error(status, message, resource, field_name, code):
            return jsonify(message=message, errors=[{"resource": resource, "field": field_name, "code": code}]), status

        def client_ok(form):
            return (form.get("client_id") == fake.client_id
                    and hmac.compare_digest(form.get("client_secret", ""), fake.client_secret))

        @app.get("/oauth/authorize")
        def authorize():
            args = request.args
            redirect_uri = args.get("redirect_uri", "")
            host = urlsplit(redirect_uri).hostname or ""
            if args.get("client_id") != fake.client_id:
                return strava_error(400, "Bad Request", "Application", "client_id", "invalid")
            if host != fake.callback_domain and not host.endswith("." + fake.callback_domain):
                return strava_error(400, "Bad Request", "Application", "redirect_uri", "invalid")
            if args.get("response_type") != "code":
                return strava_error(400, "Bad Request", "Application", "response_type", "invalid")
            with fake._lock:
                athlete = fake._state.athletes.get(fake._state.authorizing)
                if athlete is None:
                    query = {"state": args.get("state", ""), "error": "access_denied"}
                    return redirect(f"{redirect_uri}?{urlencode(query)}")
                asked = [s for s in args.get("scope", "").replace(" ", ",").split(",") if s]
                granted = athlete.grant_scope if athlete.grant_scope is not None else ",".join(["read", *asked])
                code = secrets.token_hex(16)
                fake._state.codes[code] = (athlete.id, granted, redirect_uri)
            query = {"state": args.get("state", ""), "code": code, "scope": granted}
            return redirect(f"{redirect_uri}?{urlencode(query)}")

        @app.post("/oauth/token")
        def token():
            form = request.form
            if not client_ok(form):
                return strava_error(401, "Bad Request", "Application", "client_id", "invalid")
            with fake._lock:
                if form.get("grant_type") == "authorization_code":
                    grant = fake._state.codes.pop(form.get("code", ""), None)  # single use
                    if grant is None:
                        return strava_error(400, "Bad Request", "AuthorizationCode", "code", "invalid")
                    athlete = fake._state.athletes[grant[0]]
                    issued = fake._issue(athlete.id, grant[1])
                    return jsonify(token_type="Bearer", expires_at=issued.expires_at,
                                   expires_in=issued.expires_at - int(time.time()),
                                   refresh_token=issued.refresh_token, access_token=issued.access_token,
                                   athlete=athlete_json(athlete))
                if form.get("grant_type") == "refresh_token":
                    current = next((t for t in fake._state.tokens.values()
                                    if hmac.compare_digest(t.refresh_token, form.get("refresh_token", ""))), None)
                    if current is None:
                        return strava_error(400, "Bad Request", "RefreshToken", "refresh_token", "invalid")
                    issued = fake._issue(current.athlete_id, current.scope)
                    return jsonify(token_type="Bearer", access_token=issued.access_token,
                                   expires_at=issued.expires_at, expires_in=issued.expires_at - int(time.time()),
                                   refresh_token=issued.refresh_token)
            return strava_error(400, "Bad Request", "Application", "grant_type", "invalid")

        @app.post("/oauth/deauthorize")
        def deauthorize():
            given = request.form.get("access_token") or request.args.get("access_token", "")
            with fake._lock:
                for athlete_id, current in list(fake._state.tokens.items()):
                    if given and hmac.compare_digest(given, current.access_token):
                        del fake._state.tokens[athlete_id]
                        return jsonify(access_token=given)
            return strava_error(401, "Authorization Error", "Athlete", "access_token", "invalid")

        def api_guard():
            with fake._lock:
                if fake._state.failures:
                    status = fake._state.failures.pop(0)
                    return None, (jsonify(message="Rate Limit Exceeded" if status == 429 else "Server Error",
                                          errors=[]), status)
                current = fake._bearer()
            if current is None:
                return None, strava_error(401, "Authorization Error", "Athlete", "access_token", "invalid")
            return current, None

        @app.get("/api/v3/activities/<int:activity_id>")
        def get_activity(activity_id):
            current, refusal = api_guard()
            if refusal:
                return refusal
            with fake._lock:
                body = fake._state.activities.get(activity_id)
            if body is None or body["athlete"]["id"] != current.athlete_id:
                return strava_error(404, "Record Not Found", "Activity", "id", "not found")
            return jsonify(body)

        @app.get("/api/v3/athlete")
        def get_athlete():
            current, refusal = api_guard()
            if refusal:
                return refusal
            with fake._lock:
                return jsonify(athlete_json(fake._state.athletes[current.athlete_id]))

        return app


def athlete_json(athlete):
    return {"id": athlete.id, "resource_state": 2, "firstname": athlete.firstname, "lastname": athlete.lastname,
            "username": None, "city": "Hanoi", "country": "Vietnam", "sex": "F", "premium": False,
            "created_at": "2020-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}


def activity_json(athlete_id, activity_id, *, start, distance_m, pace_s_per_km=360.0, sport_type="Run",
                  activity_type=None, name="Morning Run", manual=False, trainer=False, gps=True,
                  device_name="Garmin Forerunner 255", elapsed_extra_s=60, split_paces=None) -> dict:
    """A detailed activity as GET /activities/{id} returns it, with metric splits at `pace_s_per_km`
    (or the given per-km paces) and a shorter last split for the remainder."""
    full = int(distance_m // 1000)
    paces = list(split_paces) if split_paces is not None else [pace_s_per_km] * full
    splits = [{"distance": 1000.4, "elapsed_time": round(p) + 2, "elevation_difference": 1.2,
               "moving_time": round(p), "split": i + 1, "average_speed": round(1000 / p, 2), "pace_zone": 2}
              for i, p in enumerate(paces)]
    rest = distance_m - 1000 * full
    if rest > 0:
        splits.append({"distance": round(rest, 1), "elapsed_time": round(rest * pace_s_per_km / 1000) + 1,
                       "elevation_difference": 0.0, "moving_time": round(rest * pace_s_per_km / 1000),
                       "split": len(splits) + 1, "average_speed": round(1000 / pace_s_per_km, 2), "pace_zone": 2})
    moving = round(sum(s["moving_time"] for s in splits)) if splits else round(distance_m / 1000 * pace_s_per_km)
    start_utc = start.astimezone(UTC)
    latlng = [21.0285, 105.8542] if gps and not manual else []
    return {
        "resource_state": 3, "id": int(activity_id), "athlete": {"id": int(athlete_id), "resource_state": 1},
        "name": name, "distance": float(distance_m), "moving_time": moving, "elapsed_time": moving + elapsed_extra_s,
        "total_elevation_gain": 12.0, "type": activity_type or OLDER_TYPES.get(sport_type, sport_type),
        "sport_type": sport_type, "workout_type": None, "external_id": f"garmin_push_{activity_id}",
        "upload_id": int(activity_id) + 1000, "start_date": start_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start_date_local": (start_utc + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timezone": "(GMT+07:00) Asia/Ho_Chi_Minh", "utc_offset": 25200.0,
        "start_latlng": latlng, "end_latlng": latlng, "achievement_count": 0, "kudos_count": 0,
        "comment_count": 0, "athlete_count": 1, "photo_count": 0,
        "map": {"id": f"a{activity_id}", "polyline": "ki{eFvqfiVqAWQIGEEKAYJgBVqDJ{BHa@jAkNJw@Pw@V",
                "summary_polyline": "ki{eFvqfiVsBmA`Feh@qg@iX`B}JeCcCqGjIq~@kf@cM{KeHeX`@_GdGkSeBiXtB}YuEkP",
                "resource_state": 3},
        "trainer": trainer, "commute": False, "manual": manual, "private": False, "flagged": False,
        "gear_id": None, "from_accepted_tag": False, "average_speed": round(distance_m / moving, 3) if moving else 0,
        "max_speed": 4.5, "has_heartrate": True, "average_heartrate": 150.0, "max_heartrate": 175,
        "elev_high": 20.0, "elev_low": 8.0, "pr_count": 0, "total_photo_count": 0, "has_kudoed": False,
        "description": "", "calories": 600.0, "device_name": device_name, "embed_token": secrets.token_hex(8),
        "splits_metric": splits, "laps": [], "best_efforts": [], "segment_efforts": [],
        "photos": {"primary": None, "count": 0}, "hide_from_home": False,
    }


# -- Strava's side of the webhook, against the app's test client ---------------------------------------------

def handshake(client, verify_token, challenge="15f7d1a91c1f40"):
    """The GET Strava sends when a subscription is created."""
    return client.get("/strava/webhook", query_string={"hub.mode": "subscribe", "hub.challenge": challenge,
                                                       "hub.verify_token": verify_token})


def push_event(client, owner_id, object_id, aspect_type="create", object_type="activity", updates=None,
               subscription_id=120475):
    """The POST Strava sends for one event."""
    return client.post("/strava/webhook", json={
        "aspect_type": aspect_type, "event_time": int(time.time()), "object_id": int(object_id),
        "object_type": object_type, "owner_id": int(owner_id), "subscription_id": subscription_id,
        "updates": updates or {},
    })


def start_fake_strava(**kwargs) -> FakeStrava:
    return FakeStrava(**kwargs)
