"""The review queue: moderators decide flagged activities; a participant may appeal a rejection once."""

import sqlalchemy as sa

from kindstride import audit
from kindstride.activities.evaluation import context_for, facts_of, lock_people, resolved_ruleset, scored, set_counted
from kindstride.activities.models import ACCEPTED, FLAGGED, REJECTED, Activity, ActivityResult
from kindstride.challenges.models import Challenge, Registration
from kindstride.db import db, utcnow
from kindstride.leaderboards.services import refresh_participant

OPEN, UPHELD, DENIED = "open", "upheld", "denied"


class ModerationError(ValueError):
    def __init__(self, *errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def review_queue(challenge, limit=100):
    """Flagged activities and open appeals, oldest first."""
    return db.session.execute(
        sa.select(ActivityResult, Activity, Registration)
        .join(Activity, Activity.id == ActivityResult.activity_id)
        .join(Registration, Registration.id == ActivityResult.registration_id)
        .where(ActivityResult.challenge_id == challenge.id,
               sa.or_(ActivityResult.status == FLAGGED, ActivityResult.appeal_state == OPEN))
        .order_by(ActivityResult.evaluated_at, ActivityResult.id).limit(limit)
    ).all()


def decide(result, decision, comment, moderator):
    """Accept or reject a flagged result, or settle an appeal; the decision is audited."""
    if decision not in (ACCEPTED, REJECTED):
        raise ModerationError("decision: must be 'accepted' or 'rejected'")
    comment = (comment or "").strip()
    if decision == REJECTED and not comment:
        raise ModerationError("comment: say why the activity is rejected")
    # An evaluation batch judging this person's day at the same moment would store its verdict over the
    # decision (or this one over a newer verdict): take the same lock, then read the result again.
    activity = db.session.get(Activity, result.activity_id)
    lock_people([activity.user_id])
    db.session.refresh(result)
    db.session.refresh(activity)
    if result.status != FLAGGED and result.appeal_state != OPEN:
        raise ModerationError("result: only flagged activities and open appeals can be decided")
    challenge = db.session.get(Challenge, result.challenge_id)
    ruleset = resolved_ruleset(challenge)
    if ruleset is None:
        raise ModerationError(f"challenge: scoring is frozen: {challenge.scoring_frozen_reason}")
    registration = db.session.get(Registration, result.registration_id)
    if decision == ACCEPTED:
        context = context_for(challenge, registration, activity, result.local_day)
        set_counted(result, activity, scored(facts_of(activity), ruleset, context), int(activity.distance_m))
    else:
        set_counted(result, activity, 0, 0)
    if result.appeal_state == OPEN:
        result.appeal_state = UPHELD if decision == ACCEPTED else DENIED
    result.status = decision
    result.decided_by_id = moderator.id
    result.decision_comment = comment
    result.evaluated_at = utcnow()
    refresh_participant(registration.id, ruleset.team_aggregation)
    audit.record("result.decided", "activity_result", result.id, decision=decision, comment=comment)
    return result


def appeal(result, user, message):
    registration = db.session.get(Registration, result.registration_id)
    if registration.user_id != user.id:
        raise ModerationError("result: not your activity")
    if result.status != REJECTED:
        raise ModerationError("result: only a rejected activity can be appealed")
    if result.appeal_state is not None:
        raise ModerationError("result: this activity was already appealed once")
    message = (message or "").strip()
    if not message or len(message) > 2000:
        raise ModerationError("message: explain in up to 2000 characters why it should count")
    result.appeal_state = OPEN
    result.appeal_message = message
    audit.record("result.appealed", "activity_result", result.id)
    return result
