"""What a ruleset change would do: every activity judged under the proposed rules, nothing written."""

import sqlalchemy as sa

from kindstride.activities.evaluation import judge_in
from kindstride.activities.models import Activity, ActivityResult
from kindstride.challenges import rulesets
from kindstride.challenges.models import Registration
from kindstride.challenges.services import ChallengeError, current_tenant
from kindstride.db import db

EXAMPLES = 20


def dry_run(challenge, ruleset):
    tenant = current_tenant()
    try:
        proposed = rulesets.resolve(rulesets.normalise_ruleset(ruleset, tenant), tenant)
    except rulesets.RulesetError as error:
        raise ChallengeError(*(f"ruleset.{line}" for line in error.errors)) from None
    current = {row.activity_id: row for row in db_results(challenge)}
    activities_changed = participants_changed = 0
    examples = []
    for registration in _registrations(challenge):
        old_total = new_total = 0
        for activity in _activities(registration):
            # Judged in start order against what is stored now: an approximation for daily limits,
            # which the real re-evaluation recomputes in order.
            verdict = judge_in(challenge, registration, activity, proposed)
            before = current.get(activity.id)
            old_total += before.score if before else 0
            new_total += verdict.score
            if before is None or before.status != verdict.status or before.score != verdict.score:
                activities_changed += 1
        if old_total != new_total:
            participants_changed += 1
            if len(examples) < EXAMPLES:
                examples.append({"bib": registration.bib, "name": registration.display_name,
                                 "score_before": old_total, "score_after": new_total})
    return {"activities_changed": activities_changed, "participants_changed": participants_changed,
            "examples": examples}


def db_results(challenge):
    return db.session.scalars(sa.select(ActivityResult).where(ActivityResult.challenge_id == challenge.id)).all()


def _registrations(challenge):
    return db.session.scalars(sa.select(Registration).where(Registration.challenge_id == challenge.id)
                              .order_by(Registration.bib)).all()


def _activities(registration):
    return db.session.scalars(sa.select(Activity).where(Activity.user_id == registration.user_id)
                              .order_by(Activity.start, Activity.id)).all()
