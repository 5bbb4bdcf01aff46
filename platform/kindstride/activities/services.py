"""Adding activities (files, manual entries, the API) and keeping one count per real-world run."""

import functools
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy.dialects import postgresql, sqlite

from kindstride.activities.models import SOURCE_RANK, Activity
from kindstride.db import UTCDateTime, db, utcnow
from kindstride.jobs import enqueue
from kindstride.ops.metrics import count_after_commit
from kindstride.rules.contract import SPORTS
from kindstride.tenancy.scope import require_tenant_id
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
    """Check and store an activity typed in by hand (or sent as JSON): the stored Activity."""
    try:
        values = EnteredActivitySchema().load(data)
    except ValidationError as error:
        raise ActivityError(*flatten_errors(error.messages)) from None
    return _as_object(store_entered(user.id, values, source))


def store_entered(user_id, values, source) -> "StoredActivity":
    """Store an activity from EnteredActivitySchema values (already loaded)."""
    if values["start"] > utcnow() + timedelta(minutes=5):
        raise ActivityError("start: is in the future")
    elapsed = values["elapsed_s"] or values["moving_s"]
    if elapsed < values["moving_s"]:
        raise ActivityError("elapsed_s: cannot be shorter than moving_s")
    key = values["external_id"] or f"{values['sport']}|{values['start'].isoformat()}|{values['distance_m']}"
    return store_activity(
        user_id, source=source, sport=values["sport"], start=values["start"], elapsed_s=elapsed,
        moving_s=values["moving_s"], distance_m=values["distance_m"], title=values["title"],
        has_gps=values["has_gps"], is_indoor=values["is_indoor"], split_paces=values["split_paces_s_per_km"],
        fingerprint=hashlib.sha256(f"{source}|{key}".encode()).hexdigest(), external_id=values["external_id"],
    )


def add_activity(user, **fields) -> Activity:
    """Store an activity once (the same fingerprint again returns the first) and queue its evaluation."""
    return _as_object(store_activity(user.id, **fields))


class StoredActivity(NamedTuple):
    id: int
    created: bool  # False: the person had this fingerprint already, and `id` is that activity
    duplicate_of_id: int | None
    received_at: object


class _Recording:
    """A recording as overlap resolution sees it."""

    __slots__ = ("id", "source", "received_at", "start", "elapsed_s", "duplicate_of_id")

    def __init__(self, id, source, received_at, start, elapsed_s, duplicate_of_id):
        self.id, self.source, self.received_at = id, source, received_at
        self.start, self.elapsed_s, self.duplicate_of_id = start, elapsed_s, duplicate_of_id


def store_activity(user_id, **fields) -> StoredActivity:
    """add_activity in as few statements as it takes (it is every API request's work): one inserts, unless this
    person has the fingerprint already, and returns the person's recordings that overlap this one;
    only when this one is not the best recording of its run, or becomes the best of a run already stored, are
    the standings updated. Its evaluation (and theirs, when they change) is queued. The statements are built
    once and run on the session's connection: no ORM work per request (tenant_id is in each of them, and
    row-level security holds them to the tenant in any case)."""
    statements = _statements(db.session.get_bind().dialect.name)
    connection = db.session.connection()
    tenant_id = require_tenant_id()
    start, fingerprint = fields["start"], fields["fingerprint"]
    person = {"tenant_id": tenant_id, "user_id": user_id, "fingerprint": fingerprint}
    received_at = utcnow()
    # of_tenant, of_user: the person again, for the RETURNING subquery (the insert's own names are its columns).
    inserted = connection.execute(statements.insert, {
        **fields, **person, "received_at": received_at, "duplicate_of_id": None, "of_tenant": tenant_id,
        "of_user": user_id, "end": start + timedelta(seconds=fields["elapsed_s"]),
        "after": start - timedelta(seconds=1)}).first()
    if inserted is None:  # stored before (or by a concurrent request, whose commit the insert waited for)
        row = connection.execute(statements.find, person).one()
        return StoredActivity(row.id, False, row.duplicate_of_id, row.received_at)
    # Every recording the insert's snapshot saw has a smaller id than this one (the tie-break of _primary).
    new = _Recording(inserted.id, fields["source"], received_at, start, fields["elapsed_s"], None)
    cluster = [new]
    for id_, source, received, begun, elapsed, duplicate_of in json.loads(inserted.earlier):
        other = _Recording(id_, source, _moment(received), _moment(begun), elapsed, duplicate_of)
        if id_ != new.id and other.start + timedelta(seconds=elapsed) > start:
            cluster.append(other)
    primary = _primary(cluster)
    from kindstride.activities.evaluation import evaluate_activity

    count_after_commit("activities_created", fields["source"])
    enqueue(evaluate_activity, new.id)
    for member in cluster:
        wanted = None if member is primary else primary.id
        if member.duplicate_of_id != wanted:
            connection.execute(statements.mark, {"in_tenant": tenant_id, "activity_id": member.id,
                                                 "duplicate_of": wanted})
            if member is not new:
                _forget_loaded(member.id)
                enqueue(evaluate_activity, member.id)
    return StoredActivity(new.id, True, None if primary is new else primary.id, received_at)


def _moment(text):
    """A timestamp from the JSON the insert returns: ISO 8601 with its offset (PostgreSQL), or UTC without one
    (SQLite stores them so)."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Statements(NamedTuple):
    insert: object
    find: object
    mark: object


@functools.cache
def _statements(dialect):
    """store_activity's statements in this database's dialect (built once: each request only binds values)."""
    table = Activity.__table__
    c = table.c
    earlier = table.alias("earlier")
    e = earlier.c
    pack = ((sa.func.json_agg, sa.func.json_build_array) if dialect == "postgresql"
            else (sa.func.json_group_array, sa.func.json_array))
    # The person's recordings that overlap this one: they start before it ends and end after `after`, a second
    # before it starts (store_activity decides exactly; the margin covers how each side rounds the end).
    # PostgreSQL's snapshot is the statement's start; SQLite's includes the new row.
    if dialect == "postgresql":
        ends_after = e.start + e.elapsed_s * sa.literal_column("interval '1 second'") > sa.bindparam("after")
    else:
        ends_after = (sa.func.julianday(e.start) + e.elapsed_s / 86400.0
                      > sa.func.julianday(sa.bindparam("after", type_=UTCDateTime())))
    listed = pack[0](pack[1](e.id, e.source, e.received_at, e.start, e.elapsed_s, e.duplicate_of_id))
    others = (sa.select(sa.func.coalesce(sa.cast(listed, sa.Text), "[]"))
              .where(e.tenant_id == sa.bindparam("of_tenant"), e.user_id == sa.bindparam("of_user"),
                     e.start < sa.bindparam("end"), ends_after).scalar_subquery())
    insert = ((postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
              .on_conflict_do_nothing(index_elements=["tenant_id", "user_id", "fingerprint"])
              .returning(c.id, others.label("earlier")))
    find = sa.select(c.id, c.received_at, c.duplicate_of_id).where(
        c.tenant_id == sa.bindparam("tenant_id"), c.user_id == sa.bindparam("user_id"),
        c.fingerprint == sa.bindparam("fingerprint"))
    mark = (sa.update(table).where(c.tenant_id == sa.bindparam("in_tenant"), c.id == sa.bindparam("activity_id"))
            .values(duplicate_of_id=sa.bindparam("duplicate_of")))
    return _Statements(insert, find, mark)


def _forget_loaded(activity_id):
    """An Activity this session holds is stale once a statement changed its row: load it afresh when used."""
    loaded = db.session.identity_map.get(db.session.identity_key(Activity, activity_id))
    if loaded is not None:
        db.session.expire(loaded)


def _as_object(stored):
    return db.session.get(Activity, stored.id, populate_existing=True)


def _primary(cluster):
    """A device file beats a phone app, which beats a manual entry; then the first received."""
    return min(cluster, key=lambda a: (SOURCE_RANK[a.source], a.received_at, a.id))


def resolve_overlaps(activity) -> list[Activity]:
    """The same run recorded twice (overlapping times) counts once (see _primary). Returns the activities whose
    standing changed."""
    end = activity.start + timedelta(seconds=activity.elapsed_s)
    overlapping = db.session.scalars(sa.select(Activity).where(
        Activity.user_id == activity.user_id, Activity.start < end, Activity.id != activity.id,
    ).order_by(Activity.start)).all()
    cluster = [activity] + [a for a in overlapping if a.start + timedelta(seconds=a.elapsed_s) > activity.start]
    primary = _primary(cluster)
    changed = []
    for member in cluster:
        wanted = None if member is primary else primary.id
        if member.duplicate_of_id != wanted or member is activity:
            member.duplicate_of_id = wanted
            changed.append(member)
    db.session.flush()
    return changed
