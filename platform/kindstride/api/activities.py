"""API: the caller's activities (entered, uploaded), their verdicts, and appeals."""

import sqlalchemy as sa
from flask import current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields

from kindstride.activities import moderation
from kindstride.activities.models import Activity, ActivityResult
from kindstride.activities.services import ActivityError, EnteredActivitySchema, store_entered
from kindstride.api.auth import BEARER, token_required
from kindstride.api.common import refuse
from kindstride.db import db
from kindstride.rules.messages import reason_message
from kindstride.security import exempt_from_rate_limits
from kindstride.web.sites import tenant_site_only

blp = Blueprint("api_activities", __name__, url_prefix="/api/v1", description="Activities and verdicts")
blp.before_request(tenant_site_only)
exempt_from_rate_limits(blp)  # no limits here: the rate limiter's per-request bookkeeping would be all it did


class ReasonSchema(Schema):
    code = fields.String()
    outcome = fields.String()
    params = fields.Dict()
    message = fields.String()


class ResultSchema(Schema):
    id = fields.Integer()
    challenge_id = fields.Integer()
    status = fields.String()
    score = fields.Integer()
    ruleset_version = fields.Integer()
    reasons = fields.List(fields.Nested(ReasonSchema))
    appeal_state = fields.String(allow_none=True)
    decision_comment = fields.String(allow_none=True)


class ActivityOutSchema(Schema):
    id = fields.Integer()
    source = fields.String()
    sport = fields.String()
    title = fields.String()
    start = fields.DateTime()
    elapsed_s = fields.Float()
    moving_s = fields.Float()
    distance_m = fields.Float()
    has_gps = fields.Boolean()
    device = fields.String(allow_none=True)
    file_name = fields.String(allow_none=True)
    duplicate_of_id = fields.Integer(allow_none=True)
    results = fields.List(fields.Nested(ResultSchema))


class UploadOutcomeSchema(Schema):
    file = fields.String()
    activity_id = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    code = fields.String(allow_none=True)


class AppealSchema(Schema):
    message = fields.String(required=True)


def _attributes(obj, schema):
    return {name: getattr(obj, name) for name in schema._declared_fields if hasattr(obj, name)}


def with_messages(result):
    """A result as the API shows it: each reason with its sentence in the tenant's language."""
    return {**_attributes(result, ResultSchema),
            "reasons": [{**reason, "message": reason_message(reason)} for reason in result.reasons]}


def _with_results(activity, attributes=None):
    attributes = attributes or _attributes(activity, ActivityOutSchema)
    results = db.session.scalars(sa.select(ActivityResult).where(ActivityResult.activity_id == attributes["id"])
                                 .order_by(ActivityResult.challenge_id)).all()
    return {**attributes, "results": [with_messages(r) for r in results]}


def _own_activity(activity_id):
    activity = db.session.scalar(sa.select(Activity).where(Activity.id == activity_id,
                                                           Activity.user_id == g.user.id))
    if activity is None:
        abort(404, message="activity_id: no such activity of yours")
    return activity


@blp.route("/activities")
class Activities(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, ActivityOutSchema(many=True))
    @token_required("read")
    def get(self):
        """The caller's activities, newest first, with their verdict in each challenge."""
        activities = db.session.scalars(sa.select(Activity).where(Activity.user_id == g.user.id)
                                        .order_by(Activity.start.desc()).limit(200)).all()
        return [_with_results(a) for a in activities]

    @blp.doc(**BEARER)
    @token_required("activities:write")
    @blp.arguments(EnteredActivitySchema(partial=False))
    @blp.response(201, ActivityOutSchema)
    def post(self, data):
        """Add an activity from a club tool or device integration (source "api")."""
        try:
            stored = store_entered(g.user.id, data, source="api")
        except ActivityError as error:
            db.session.rollback()
            refuse(error)
        if stored.created and current_app.config.get("REDIS_URL"):
            # Its verdicts are judged by a worker after the commit: the answer is what was sent, as stored.
            answer = {name: data.get(name) for name in ANSWERED_FIELDS}
            answer.update(id=stored.id, source="api", elapsed_s=data["elapsed_s"] or data["moving_s"],
                          duplicate_of_id=stored.duplicate_of_id, device=None, file_name=None, results=[])
            db.session.commit()
            return answer
        # Stored before (its verdicts are there to read), or without Redis (the jobs run in-process during the
        # commit, so the verdicts are read after it).
        db.session.commit()
        return _with_results(db.session.get(Activity, stored.id))


ANSWERED_FIELDS = ("sport", "title", "start", "moving_s", "distance_m", "has_gps")


@blp.route("/activities/upload")
class Upload(MethodView):
    @blp.doc(**BEARER, requestBody={"content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"files": {"type": "array", "items": {"type": "string",
                                                                              "format": "binary"}}}}}}})
    @blp.response(200, UploadOutcomeSchema(many=True))
    @token_required("activities:write")
    def post(self):
        """Upload FIT, GPX or TCX files (or zips of them); one outcome per file."""
        from kindstride.activities.uploads import import_uploads

        files = request.files.getlist("files")
        if not files:
            abort(422, message="files: send one or more files as multipart field 'files'")
        return import_uploads(g.user, [(f.filename or "upload", f.read()) for f in files])


@blp.route("/activities/<int:activity_id>")
class ActivityResource(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, ActivityOutSchema)
    @token_required("read")
    def get(self, activity_id):
        """One of the caller's activities with its verdicts and reasons."""
        return _with_results(_own_activity(activity_id))


@blp.route("/results/<int:result_id>/appeal")
class Appeal(MethodView):
    @blp.doc(**BEARER)
    @token_required("activities:write")
    @blp.arguments(AppealSchema)
    @blp.response(200, ResultSchema)
    def post(self, data, result_id):
        """Appeal a rejection (once)."""
        result = db.session.get(ActivityResult, result_id)
        if result is None:
            abort(404, message="result_id: no such result")
        try:
            moderation.appeal(result, g.user, data["message"])
        except moderation.ModerationError as error:
            db.session.rollback()
            refuse(error, 404 if "not your" in str(error) else 422)
        db.session.commit()
        return result
