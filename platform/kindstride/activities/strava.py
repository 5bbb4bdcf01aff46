"""Strava: connecting an account, importing the activities Strava's webhook announces, keeping tokens fresh,
and handling revoked access.

How the pieces fit:
- A person connects on their tenant's site (OAuth2 through authlib, scope activity:read_all). The tokens are
  stored encrypted in `strava_connections`; a platform row in `strava_athlete_routes` remembers which tenant
  the athlete is connected in, because Strava has ONE webhook subscription for the whole platform.
- Strava's webhook (any host, see strava_views) only routes the event to its tenant and queues a job. The
  payload is trusted for nothing but ids (Strava does not sign events): every job reads the truth back from
  Strava with the athlete's own token. A forged "delete" finds the activity still there; a forged
  "deauthorization" finds the token still working.
- Revocation is decided by Strava's token endpoint alone: an API call answered 401 is retried once with a
  refreshed token, and only a refused refresh token (or the person disconnecting) revokes the connection.

Strava's API agreement lets a person's Strava data be shown to that person only: imported activities are
`owner_only`, and only their counted kilometres reach leaderboards and totals. When access is revoked, the
tokens are erased and the imported activities lose their Strava name and device; the counted numbers stay,
because challenge results and pledges were computed from them.
"""

import functools
import hashlib
import logging
from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from kindstride.accounts.models import User
from kindstride.activities.evaluation import evaluate_activity, judge_people, resolved_ruleset
from kindstride.activities.models import Activity, ActivityResult
from kindstride.activities.services import add_activity, resolve_overlaps
from kindstride.activities.strava_models import StravaAthleteRoute, StravaConnection
from kindstride.challenges.models import Challenge, Registration
from kindstride.crypto import secrets_box
from kindstride.db import db, utcnow
from kindstride.jobs import enqueue
from kindstride.leaderboards.services import refresh_participant
from kindstride.tenancy.scope import tenant_scope

log = logging.getLogger(__name__)

SCOPE = "activity:read_all"  # private activities too: a run set to "only me" still counts for its owner
READ_SCOPES = {"activity:read", "activity:read_all"}
REFRESH_MARGIN = timedelta(minutes=5)  # refresh a little early, so a token never expires mid-request
HTTP_TIMEOUT = 10  # seconds, for every call to Strava
FULL_SPLIT_M = 990  # Strava's metric splits are 1 km give or take a few metres; the last one is shorter

# Strava sport_type (or the older type) -> our sport. Anything else is "other", which no distance challenge
# counts: e-bike rides in particular are motor-assisted and are not rides for a kilometre challenge.
STRAVA_SPORTS = {
    "Run": "run", "TrailRun": "run", "VirtualRun": "run",
    "Walk": "walk",
    "Hike": "hike",
    "Ride": "ride", "MountainBikeRide": "ride", "GravelRide": "ride", "VirtualRide": "ride",
    "Velomobile": "ride", "Handcycle": "ride",
    "Swim": "swim",
    "Wheelchair": "wheelchair",
}


class StravaError(Exception):
    """A Strava call failed in a way that retrying the same job will not fix by itself."""


class StravaUnavailable(StravaError):
    """Rate limited, a server error or a network failure: the job raises it so rq retries with backoff."""


class StravaRevoked(StravaError):
    """Strava refused the connection's refresh token: the person revoked our access."""


class StravaMisconfigured(StravaError):
    """Strava refused the platform's client id or secret: an operator must fix the configuration."""


class StravaConnectError(StravaError):
    """Connecting is refused; the message says why, for the person trying."""


# -- configuration and clients -------------------------------------------------------------------------------

def configured() -> bool:
    return bool(current_app.config.get("STRAVA_CLIENT_ID") and current_app.config.get("STRAVA_CLIENT_SECRET"))


def _oauth_url(endpoint):
    return f"{current_app.config['STRAVA_OAUTH_URL'].rstrip('/')}/{endpoint}"


def oauth_client():
    """The platform's Strava app as an authlib client, registered once per Flask app."""
    oauth = current_app.extensions["kindstride.oauth"]
    client = oauth.create_client("strava")
    if client is None:
        client = oauth.register(
            "strava",
            client_id=current_app.config["STRAVA_CLIENT_ID"],
            client_secret=current_app.config["STRAVA_CLIENT_SECRET"],
            authorize_url=_oauth_url("authorize"),
            access_token_url=_oauth_url("token"),
            # Strava takes the client credentials in the form body, and a comma-separated scope.
            client_kwargs={"scope": SCOPE, "token_endpoint_auth_method": "client_secret_post"},
        )
    return client


@functools.cache
def _client_class():
    """stravalib's Client and protocol, pointed at a configurable API base (built once: importing stravalib
    takes a while, so web processes only pay for it when a job first needs it)."""
    from stravalib import Client
    from stravalib.protocol import ApiV3

    class ConfiguredApi(ApiV3):
        """stravalib's protocol with the API base from configuration (the stock one only knows
        https://www.strava.com). Token refresh is ours, from the stored tokens, so stravalib's own
        (which reads STRAVA_CLIENT_ID from the process environment) stays off."""

        def __init__(self, base_url, **kwargs):
            self.base_url = base_url.rstrip("/")
            super().__init__(**kwargs)

        def _check_credentials(self):
            return None

        def resolve_url(self, url):
            return url if url.startswith("http") else f"{self.base_url}/{url.strip('/')}"

    class ConfiguredClient(Client):
        def __init__(self, base_url, access_token):
            # What Client.__init__ does, with our protocol. No client-side rate limiter: a 429 fails the
            # job, and rq retries it with backoff.
            self.log = logging.getLogger(f"{Client.__module__}.{Client.__name__}")
            self.protocol = ConfiguredApi(base_url, access_token=access_token)

    return ConfiguredClient


def api_client(access_token):
    """A stravalib Client for one access token, talking to KINDSTRIDE_STRAVA_API_URL."""
    return _client_class()(current_app.config["STRAVA_API_URL"], access_token)


# -- tokens ----------------------------------------------------------------------------------------------------

def _encrypt(value):
    return secrets_box().encrypt(value)


def _decrypt(value):
    return secrets_box().decrypt(value)


def _store_tokens(connection, payload):
    connection.access_token = _encrypt(payload["access_token"])
    connection.refresh_token = _encrypt(payload["refresh_token"])
    connection.expires_at = datetime.fromtimestamp(int(payload["expires_at"]), UTC)


def _expiring(connection):
    return connection.expires_at is None or connection.expires_at <= utcnow() + REFRESH_MARGIN


def _oauth_post(endpoint, data):
    """POST to Strava's OAuth endpoints; the answer's status decides which error it is."""
    try:
        response = requests.post(_oauth_url(endpoint), data=data, timeout=HTTP_TIMEOUT)
    except requests.RequestException as error:
        raise StravaUnavailable(f"Strava {endpoint}: {error}") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise StravaUnavailable(f"Strava {endpoint}: HTTP {response.status_code}")
    if response.status_code >= 400:
        try:
            errors = response.json().get("errors") or []
        except (ValueError, AttributeError):
            errors = []
        if any(isinstance(e, dict) and (e.get("resource") == "Application"
                                        or e.get("field") in ("client_id", "client_secret")) for e in errors):
            raise StravaMisconfigured(f"Strava {endpoint} refused the platform's client credentials: {errors}")
        raise StravaRevoked(f"Strava {endpoint}: HTTP {response.status_code} {errors}")
    return response.json()


def refresh_tokens(connection, force=False):
    """Swap the refresh token for new tokens, and commit them at once.

    Strava retires the old refresh token when it hands out a new one, so the new pair must survive whatever
    the job does next (a rollback after a failed fetch would otherwise lose access for good). The row is
    locked and re-read first: of two workers refreshing together, the second finds the work done.
    """
    db.session.refresh(connection, with_for_update=True)
    if not connection.is_active:
        raise StravaRevoked("the connection is revoked")
    if force or _expiring(connection):
        payload = _oauth_post("token", {
            "client_id": current_app.config["STRAVA_CLIENT_ID"],
            "client_secret": current_app.config["STRAVA_CLIENT_SECRET"],
            "grant_type": "refresh_token",
            "refresh_token": _decrypt(connection.refresh_token),
        })
        _store_tokens(connection, payload)
    db.session.commit()


def usable_access_token(connection) -> str:
    if not connection.is_active:
        raise StravaRevoked("the connection is revoked")
    if _expiring(connection):
        refresh_tokens(connection)
    return _decrypt(connection.access_token)


def call_strava(connection, request):
    """Run request(client) with the connection's token; None when Strava says the object does not exist.

    A 401 gets one more try with a refreshed token (Strava may retire a token early); a refused refresh
    raises StravaRevoked. 429 and 5xx raise StravaUnavailable (retried); other refusals raise StravaError.
    """
    from stravalib import exc

    for attempt in (1, 2):
        client = api_client(usable_access_token(connection))
        try:
            return request(client)
        except exc.ObjectNotFound:
            return None
        except exc.AccessUnauthorized as error:
            if attempt == 2:
                raise StravaError(f"Strava refuses a freshly refreshed token (missing scope?): {error}") from None
            refresh_tokens(connection, force=True)
        except exc.ApplicationInactive as error:
            raise StravaMisconfigured(str(error)) from None
        except exc.Fault as error:
            status = error.response.status_code if error.response is not None else 0
            if status == 429 or status >= 500:
                raise StravaUnavailable(f"Strava API: HTTP {status}") from None
            raise StravaError(f"Strava API: {error}") from None
        except (exc.RateLimitExceeded, requests.RequestException) as error:
            raise StravaUnavailable(f"Strava API: {error}") from None
    raise AssertionError("unreachable")


# -- connecting and disconnecting ----------------------------------------------------------------------------

def connection_of(user) -> StravaConnection | None:
    return db.session.scalar(sa.select(StravaConnection).where(StravaConnection.user_id == user.id))


def _connection_of_athlete(athlete_id) -> StravaConnection | None:
    return db.session.scalar(sa.select(StravaConnection).where(StravaConnection.athlete_id == str(athlete_id)))


def connect(user, token, granted_scope) -> StravaConnection:
    """Store the tokens of a finished authorization (one connection per person, per athlete, per tenant)."""
    athlete_id = str((token.get("athlete") or {}).get("id") or "")
    if not athlete_id.isdigit() or not all(token.get(k) for k in ("access_token", "refresh_token", "expires_at")):
        raise StravaConnectError(_("Strava did not complete the connection. Please try again."))
    if not READ_SCOPES & set(granted_scope.replace(" ", ",").split(",")):
        raise StravaConnectError(_("Allow kindstride to view your activities on Strava, "
                                   "otherwise none of them can count."))
    route = db.session.get(StravaAthleteRoute, athlete_id)
    if route is not None and route.tenant_id != user.tenant_id:
        # One route per athlete: Strava's single webhook must know where the athlete's events go.
        raise StravaConnectError(_("This Strava account is connected on another kindstride site. "
                                   "Disconnect it there first."))
    holder = _connection_of_athlete(athlete_id)
    if holder is not None and holder.user_id != user.id:
        if holder.is_active:
            raise StravaConnectError(_("This Strava account is connected to another account on this site."))
        db.session.delete(holder)  # a revoked connection of someone else no longer holds the athlete
        db.session.flush()
    connection = connection_of(user)
    if connection is None:
        connection = StravaConnection(user_id=user.id, athlete_id=athlete_id)
        db.session.add(connection)
    elif connection.athlete_id != athlete_id:
        _drop_route(connection)  # the person switched to another Strava account
        connection.athlete_id = athlete_id
    _store_tokens(connection, token)
    connection.scope = granted_scope[:200]
    connection.revoked_at = None
    if route is None:
        db.session.add(StravaAthleteRoute(athlete_id=athlete_id, tenant_id=user.tenant_id))
    db.session.flush()
    return connection


def _drop_route(connection):
    db.session.execute(sa.delete(StravaAthleteRoute).where(StravaAthleteRoute.athlete_id == connection.athlete_id,
                                                           StravaAthleteRoute.tenant_id == connection.tenant_id))


def mark_revoked(connection):
    """Access has ended: erase the tokens, stop routing the athlete's events here, and strip the imported
    activities of their Strava details (name, device). Their counted numbers stay with the results."""
    connection.revoked_at = connection.revoked_at or utcnow()
    connection.access_token = connection.refresh_token = None
    connection.expires_at = None
    _drop_route(connection)
    db.session.execute(sa.update(Activity).where(Activity.user_id == connection.user_id,
                                                 Activity.owner_only.is_(True), Activity.external_id.is_not(None))
                       .values(title="", device=None))
    db.session.flush()
    log.info("Strava connection of athlete %s (tenant %s) revoked", connection.athlete_id, connection.tenant_id)


def disconnect(connection):
    """The person disconnects: Strava is asked to drop the authorization, then it ends here either way."""
    if not connection.is_active:
        return
    try:
        _oauth_post("deauthorize", {"access_token": usable_access_token(connection)})
    except StravaRevoked:
        pass  # already revoked at Strava
    except StravaError as error:
        log.warning("Strava deauthorization of athlete %s failed (%s); revoked here anyway",
                    connection.athlete_id, error)
    mark_revoked(connection)


# -- the webhook -------------------------------------------------------------------------------------------

def parse_event(payload) -> dict | None:
    """The ids of a webhook event, or None when it is not one (see Strava's Webhook Events API)."""
    if not isinstance(payload, dict):
        return None
    try:
        event = {"object_type": str(payload["object_type"]), "aspect_type": str(payload["aspect_type"]),
                 "object_id": int(payload["object_id"]), "owner_id": int(payload["owner_id"]),
                 "updates": payload.get("updates") or {}}
    except (KeyError, TypeError, ValueError):
        return None
    if event["object_type"] not in ("activity", "athlete") or not isinstance(event["updates"], dict):
        return None
    if event["aspect_type"] not in ("create", "update", "delete"):
        return None
    return event


def _job_for(event):
    athlete_id = str(event["owner_id"])
    if event["object_type"] == "activity":
        job = remove_strava_activity if event["aspect_type"] == "delete" else import_strava_activity
        return job, (athlete_id, event["object_id"])
    if str(event["updates"].get("authorized", "")).lower() == "false":
        return check_strava_access, (athlete_id,)
    return None, ()


def route_event(event) -> None:
    """Queue the job for one webhook event in the tenant its athlete is connected in; never waits on Strava."""
    route = db.session.get(StravaAthleteRoute, str(event["owner_id"]))
    if route is None:
        log.info("Strava %s %s event for unknown athlete %s ignored", event["object_type"], event["aspect_type"],
                 event["owner_id"])
        return
    job, args = _job_for(event)
    if job is None:
        return
    with tenant_scope(route.tenant_id):
        enqueue(job, *args)
    db.session.commit()  # the job is dispatched once this commits


# -- jobs ------------------------------------------------------------------------------------------------------

def _active_connection(athlete_id):
    connection = _connection_of_athlete(athlete_id)
    if connection is None or not connection.is_active:
        log.info("Strava athlete %s has no active connection here; event dropped", athlete_id)
        return None
    return connection


def _revoke_on_refusal(connection, request):
    """call_strava, but a revoked access marks the connection and answers (False, None)."""
    try:
        return True, call_strava(connection, request)
    except StravaRevoked:
        mark_revoked(connection)
        return False, None


def import_strava_activity(athlete_id, strava_activity_id):
    """A tenant job: fetch one Strava activity (new or changed) and store or update our copy of it."""
    connection = _active_connection(athlete_id)
    if connection is None:
        return
    try:
        ok, detailed = _revoke_on_refusal(connection, lambda client: client.get_activity(strava_activity_id))
    except (StravaUnavailable, StravaMisconfigured):
        raise  # rq retries with backoff
    except StravaError as error:
        log.warning("Strava activity %s of athlete %s not imported: %s", strava_activity_id, athlete_id, error)
        return
    if not ok:
        return
    existing = _imported(connection.user_id, strava_activity_id)
    if detailed is None:
        # Gone from Strava, or no longer readable with the granted scope: our copy goes as well.
        if existing is not None:
            remove_activity(existing)
        return
    if detailed.athlete is None or str(detailed.athlete.id) != connection.athlete_id:
        log.warning("Strava activity %s does not belong to athlete %s; not imported", strava_activity_id,
                    athlete_id)
        return
    fields = activity_fields(detailed)
    if fields is None:
        log.info("Strava activity %s has no duration; not imported", strava_activity_id)
        return
    user = db.session.get(User, connection.user_id)
    if existing is None:
        add_activity(user, **fields)
    else:
        update_activity(existing, fields)


def remove_strava_activity(athlete_id, strava_activity_id):
    """A tenant job for a "delete" event: remove our copy once Strava confirms the activity is gone."""
    connection = _active_connection(athlete_id)
    if connection is None:
        return
    existing = _imported(connection.user_id, strava_activity_id)
    if existing is None:
        return
    try:
        ok, detailed = _revoke_on_refusal(connection, lambda client: client.get_activity(strava_activity_id))
    except (StravaUnavailable, StravaMisconfigured):
        raise
    except StravaError as error:
        log.warning("Strava activity %s of athlete %s: deletion not confirmed: %s", strava_activity_id,
                    athlete_id, error)
        return
    if ok and detailed is not None:
        log.warning("Strava still has activity %s of athlete %s: delete event ignored", strava_activity_id,
                    athlete_id)
        return
    if ok:
        remove_activity(existing)


def check_strava_access(athlete_id):
    """A tenant job for a deauthorization event: revoke the connection if Strava confirms it."""
    connection = _active_connection(athlete_id)
    if connection is not None:
        ok, _athlete = _revoke_on_refusal(connection, lambda client: client.get_athlete())
        if ok:
            log.warning("Strava deauthorization event for athlete %s, but its token still works: ignored",
                        athlete_id)


# -- mapping Strava activities -------------------------------------------------------------------------------

def fingerprint(strava_activity_id) -> str:
    return hashlib.sha256(f"strava|{strava_activity_id}".encode()).hexdigest()


def _imported(user_id, strava_activity_id) -> Activity | None:
    return db.session.scalar(sa.select(Activity).where(Activity.user_id == user_id,
                                                       Activity.fingerprint == fingerprint(strava_activity_id)))


def strava_sport(detailed) -> tuple[str, str]:
    """(Strava's sport name, our sport): sport_type when Strava sends it, else the older type."""
    raw = detailed.sport_type or detailed.type
    name = getattr(raw, "root", raw) or ""
    return name, STRAVA_SPORTS.get(name, "other")


def split_paces(splits) -> list[float]:
    """Seconds per km of each complete metric split, from its moving time, in order."""
    paces = []
    for split in splits or ():
        distance, moving = float(split.distance or 0), float(split.moving_time or 0)
        if distance >= FULL_SPLIT_M and moving > 0:
            paces.append(round(moving * 1000 / distance, 1))
    return paces


def activity_fields(detailed) -> dict | None:
    """The add_activity fields of a stravalib DetailedActivity, or None when it has no duration."""
    name, sport = strava_sport(detailed)
    moving = float(detailed.moving_time or 0)
    elapsed = float(detailed.elapsed_time or 0)
    moving = moving or elapsed
    if detailed.start_date is None or moving <= 0:
        return None
    return {
        "source": "manual" if detailed.manual else "strava",
        "sport": sport,
        "start": detailed.start_date.astimezone(UTC),
        "elapsed_s": max(elapsed, moving),
        "moving_s": moving,
        "distance_m": float(detailed.distance or 0),
        "has_gps": bool(detailed.start_latlng),
        "is_indoor": bool(detailed.trainer) or name.startswith("Virtual"),
        "split_paces": split_paces(detailed.splits_metric),
        "device": (detailed.device_name or None) and detailed.device_name[:200],
        "title": (detailed.name or "")[:200],
        "fingerprint": fingerprint(detailed.id),
        "external_id": str(detailed.id),
        "owner_only": True,
    }


def _judge_again(activities):
    for activity_id in sorted({a.id for a in activities}):
        enqueue(evaluate_activity, activity_id)


def update_activity(activity, fields) -> Activity:
    """Apply Strava's current version of an imported activity; it is judged again if anything changed.

    Recordings that were duplicates of it are set free first: with a new start time they may no longer
    overlap it, and then they count on their own.
    """
    if all(getattr(activity, key) == value for key, value in fields.items()):
        return activity  # the same event twice changes nothing
    followers = db.session.scalars(sa.select(Activity).where(Activity.duplicate_of_id == activity.id)).all()
    for follower in followers:
        follower.duplicate_of_id = None
    for key, value in fields.items():
        setattr(activity, key, value)
    db.session.flush()
    changed = resolve_overlaps(activity)
    for follower in followers:
        changed += resolve_overlaps(follower)
    _judge_again(changed)
    return activity


def remove_activity(activity):
    """Delete an activity everywhere it counted, keeping every total exact.

    1. Its results go; in each challenge they were in, the participant's later activities of the same local
       day are judged again (daily limits may have held them back), then the participant's total (and
       with it the team's) is recomputed from the remaining results.
    2. Recordings that were duplicates of it are set free and judged again: the next best one now counts.
    In a challenge whose scoring is frozen (a strategy is missing) only the participant total is
    recomputed: nothing is judged without its strategies.
    """
    affected = db.session.execute(
        sa.select(ActivityResult.challenge_id, ActivityResult.registration_id, ActivityResult.local_day)
        .where(ActivityResult.activity_id == activity.id).order_by(ActivityResult.challenge_id)).all()
    db.session.execute(sa.delete(ActivityResult).where(ActivityResult.activity_id == activity.id))
    followers = db.session.scalars(sa.select(Activity).where(Activity.duplicate_of_id == activity.id)).all()
    for follower in followers:
        follower.duplicate_of_id = None
    db.session.flush()  # no row may point at it when it goes
    start = activity.start
    db.session.delete(activity)
    db.session.flush()

    for challenge_id, registration_id, day in affected:
        challenge = db.session.get(Challenge, challenge_id)
        registration = db.session.get(Registration, registration_id)
        ruleset = resolved_ruleset(challenge)
        if ruleset is None:
            refresh_participant(registration_id)
            continue
        later = db.session.scalars(
            sa.select(Activity.id).join(ActivityResult, ActivityResult.activity_id == Activity.id)
            .where(ActivityResult.registration_id == registration_id, ActivityResult.local_day == day,
                   Activity.start > start)).all()
        judge_people([registration.user_id], later, challenge_id=challenge_id)
        refresh_participant(registration_id, ruleset.team_aggregation)

    changed = []
    for follower in followers:
        changed += resolve_overlaps(follower)
    _judge_again(changed)
