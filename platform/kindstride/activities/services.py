"""Adding activities (files, manual entries, the API) and keeping one count per real-world run."""

import hashlib
from datetime import timedelta

import sqlalchemy as sa
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from kindstride.activities.models import SOURCE_RANK, Activity
from kindstride.db import db, utcnow
from kindstride.jobs import enqueue
from kindstride.rules.contract import SPORTS
from kindstride.tenancy.settings_schema import flatten_errors


class ActivityError(ValueError):
    def __init__(self, *errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


class EnteredActivitySchema(Schema):
    """An activity typed in by hand or sent by the REST API."""

    class Meta:
        unknown = RAISE

    sport = fields.String(required=True, validate=validate.OneOf(SPORTS))
    start = fields.AwareDateTime(required=True)
    moving_s = fields.Float(required=True, validate=validate.Range(min=1, max=7 * 86400))
    elapsed_s = fields.Float(load_default=None, validate=validate.Range(min=1, max=7 * 86400))
    distance_m = fields.Float(required=True, validate=validate.Range(min=0, max=2_000_000))
    title = fields.String(load_default="", validate=validate.Length(max=200))
    has_gps = fields.Boolean(load_default=False)
    is_indoor = fields.Boolean(load_default=False)
    split_paces_s_per_km = fields.List(fields.Float(validate=validate.Range(min=1, max=86400)), load_default=list)
    external_id = fields.String(load_default=None, validate=validate.Length(max=64))


def add_entered(user, data, source) -> Activity:
    try:
        values = EnteredActivitySchema().load(data)
    except ValidationError as error:
        raise ActivityError(*flatten_errors(error.messages)) from None
    if values["start"] > utcnow() + timedelta(minutes=5):
        raise ActivityError("start: is in the future")
    elapsed = values["elapsed_s"] or values["moving_s"]
    if elapsed < values["moving_s"]:
        raise ActivityError("elapsed_s: cannot be shorter than moving_s")
    key = values["external_id"] or f"{values['sport']}|{values['start'].isoformat()}|{values['distance_m']}"
    return add_activity(
        user, source=source, sport=values["sport"], start=values["start"], elapsed_s=elapsed,
        moving_s=values["moving_s"], distance_m=values["distance_m"], title=values["title"],
        has_gps=values["has_gps"], is_indoor=values["is_indoor"], split_paces=values["split_paces_s_per_km"],
        fingerprint=hashlib.sha256(f"{source}|{key}".encode()).hexdigest(), external_id=values["external_id"],
    )


def add_activity(user, **fields) -> Activity:
    """Store an activity once (the same fingerprint again returns the first) and queue its evaluation."""
    existing = db.session.scalar(sa.select(Activity).where(Activity.user_id == user.id,
                                                           Activity.fingerprint == fields["fingerprint"]))
    if existing is not None:
        return existing
    # duplicate_of_id given (not left to the column default) so resolve_overlaps setting it to what it already is
    # is no change: no UPDATE after the INSERT.
    activity = Activity(user_id=user.id, received_at=utcnow(), duplicate_of_id=None, **fields)
    db.session.add(activity)
    db.session.flush()
    for changed in resolve_overlaps(activity):
        from kindstride.activities.evaluation import evaluate_activity

        enqueue(evaluate_activity, changed.id)
    return activity


def resolve_overlaps(activity) -> list[Activity]:
    """The same run recorded twice (overlapping times) counts once: a device file beats a phone app,
    which beats a manual entry; then the first received. Returns the activities whose standing changed."""
    end = activity.start + timedelta(seconds=activity.elapsed_s)
    overlapping = db.session.scalars(sa.select(Activity).where(
        Activity.user_id == activity.user_id, Activity.start < end, Activity.id != activity.id,
    ).order_by(Activity.start)).all()
    cluster = [activity] + [a for a in overlapping if a.start + timedelta(seconds=a.elapsed_s) > activity.start]
    primary = min(cluster, key=lambda a: (SOURCE_RANK[a.source], a.received_at, a.id))
    changed = []
    for member in cluster:
        wanted = None if member is primary else primary.id
        if member.duplicate_of_id != wanted or member is activity:
            member.duplicate_of_id = wanted
            changed.append(member)
    db.session.flush()
    return changed
