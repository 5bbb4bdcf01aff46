"""API: the moderators' review queue and decisions."""

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from kindstride.activities import moderation
from kindstride.activities.models import ActivityResult
from kindstride.api.activities import ResultSchema
from kindstride.api.auth import BEARER, token_required
from kindstride.api.common import challenge_or_404, refuse
from kindstride.db import db
from kindstride.rules.messages import reason_message
from kindstride.web.sites import tenant_site_only

blp = Blueprint("api_moderation", __name__, url_prefix="/api/v1", description="Moderation")
blp.before_request(tenant_site_only)


class QueueItemSchema(Schema):
    result_id = fields.Integer()
    activity_id = fields.Integer()
    bib = fields.Integer()
    name = fields.String()
    status = fields.String()
    appeal_message = fields.String(allow_none=True)
    reasons = fields.List(fields.String())
    sport = fields.String()
    distance_m = fields.Float()
    start = fields.DateTime()


class DecisionSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["accepted", "rejected"]))
    comment = fields.String(load_default="")


@blp.route("/challenges/<slug>/review-queue")
class ReviewQueue(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, QueueItemSchema(many=True))
    @token_required("moderate")
    def get(self, slug):
        """Flagged activities and open appeals, oldest first."""
        challenge = challenge_or_404(slug)
        return [
            {"result_id": result.id, "activity_id": activity.id, "bib": registration.bib,
             "name": registration.display_name, "status": result.status, "appeal_message": result.appeal_message,
             "reasons": [reason_message(r) for r in result.reasons], "sport": activity.sport,
             "distance_m": activity.distance_m, "start": activity.start}
            for result, activity, registration in moderation.review_queue(challenge)
        ]


@blp.route("/results/<int:result_id>/decision")
class Decision(MethodView):
    @blp.doc(**BEARER)
    @token_required("moderate")
    @blp.arguments(DecisionSchema)
    @blp.response(200, ResultSchema)
    def post(self, data, result_id):
        """Accept or reject a flagged activity or an appealed rejection, with a comment."""
        result = db.session.get(ActivityResult, result_id)
        if result is None:
            abort(404, message="result_id: no such result")
        try:
            moderation.decide(result, data["decision"], data["comment"], g.user)
        except moderation.ModerationError as error:
            db.session.rollback()
            refuse(error)
        db.session.commit()
        return result
