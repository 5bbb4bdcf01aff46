"""Event hooks fire for accepted activities, succeeded donations and closed challenges; cron closes
finished challenges after the late-sync grace."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from kindstride.accounts import services as accounts
from kindstride.activities.services import add_entered
from kindstride.challenges import services as challenges
from kindstride.challenges.lifecycle import close_finished_challenges
from kindstride.challenges.models import Challenge
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import get_tenant
from tests.support.jobs import run_queued_jobs
from tests.test_plugins import plugin_dist  # noqa: F401 (a fixture)

NOW = datetime.now(UTC).replace(microsecond=0)
RECORDER = """
from kindstride.hookspecs import hookimpl

CALLS = []

@hookimpl
def activity_accepted(tenant_id, activity_id):
    CALLS.append(("activity_accepted", tenant_id, activity_id))

@hookimpl
def challenge_closed(tenant_id, challenge_id):
    CALLS.append(("challenge_closed", tenant_id, challenge_id))
"""


def test_hooks_fire_and_finished_challenges_close(make_app, plugin_dist):  # noqa: F811
    plugin_dist(recorder=RECORDER)
    import ks_test_recorder

    app = make_app(PLUGINS=["core_rules", "recorder"])
    with app.app_context():
        from kindstride.tenancy.services import create_tenant

        tenant = create_tenant("hooks", "Hooks Club", "en", "USD", "UTC")
        tenant.settings = {**tenant.settings, "plugins": ["core_rules", "recorder"]}
        with tenant_scope(tenant.id):
            runner = accounts.sign_up("r@hooks.example", "Runner", "correct horse battery")
            ended = challenges.create_challenge({
                "slug": "ended", "title": "Ended", "sports": ["run"], "preset": "company-month",
                "registration_opens_at": (NOW - timedelta(days=20)).isoformat(),
                "registration_closes_at": (NOW - timedelta(days=5)).isoformat(),
                "counting_start": (NOW - timedelta(days=15)).isoformat(),
                "counting_end": (NOW - timedelta(days=4)).isoformat()})
            running = challenges.create_challenge({
                "slug": "running", "title": "Running", "sports": ["run"], "preset": "company-month",
                "registration_opens_at": (NOW - timedelta(days=2)).isoformat(),
                "registration_closes_at": (NOW + timedelta(days=5)).isoformat(),
                "counting_start": (NOW - timedelta(days=2)).isoformat(),
                "counting_end": (NOW + timedelta(days=5)).isoformat()})
            challenges.register(running, runner, {})
            activity = add_entered(runner, {"sport": "run", "start": (NOW - timedelta(hours=3)).isoformat(),
                                            "moving_s": 1800, "distance_m": 5000, "has_gps": True,
                                            "split_paces_s_per_km": [360] * 5}, source="device")
            db.session.commit()
            activity_id, ended_id = activity.id, ended.id
        run_queued_jobs(app)
        with tenant_scope(get_tenant("hooks").id):
            close_finished_challenges()
            db.session.commit()
            statuses = dict(db.session.execute(sa.select(Challenge.slug, Challenge.status)).all())
        tenant_id = get_tenant("hooks").id
    assert statuses == {"ended": "closed", "running": "open"}
    assert ("activity_accepted", tenant_id, activity_id) in ks_test_recorder.CALLS
    assert ("challenge_closed", tenant_id, ended_id) in ks_test_recorder.CALLS


def test_a_final_takes_the_top_two_men_and_women_over_21_km_of_each_qualifier(app, tenants):
    from kindstride.accounts.models import User

    with tenant_scope(tenants["alpha"]):
        window = {"registration_opens_at": (NOW - timedelta(days=9)).isoformat(),
                  "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
                  "counting_start": (NOW - timedelta(days=3)).isoformat(),
                  "counting_end": (NOW + timedelta(days=9)).isoformat()}
        qualifier = challenges.create_challenge({"slug": "q1", "title": "Qualifier 1", "sports": ["run"],
                                                 "preset": "company-month", **window})
        final = challenges.create_challenge({"slug": "final", "title": "Final", "sports": ["run"],
                                             "preset": "company-month", **window, "qualifiers": [
                                                 {"challenge": "q1", "top_per_gender": 2, "min_distance_m": 21000}]})
        runners = {}
        # The two of each gender with the most counted km, among those with at least 21 km.
        for name, gender, km in (("ana", "female", 30), ("bea", "female", 25), ("cat", "female", 22),
                                 ("dan", "male", 40), ("eli", "male", 20), ("fin", "male", 21)):
            user = accounts.sign_up(f"{name}@alpha.example", name.title(), "correct horse battery")
            challenges.register(qualifier, user, {"gender": gender})
            add_entered(user, {"sport": "run", "start": (NOW - timedelta(hours=30)).isoformat(),
                               "moving_s": km * 360, "distance_m": km * 1000, "has_gps": True,
                               "split_paces_s_per_km": [360] * km}, source="device")
            runners[name] = user.id
        db.session.commit()
    run_queued_jobs(app)
    with tenant_scope(tenants["alpha"]):
        final = db.session.scalar(sa.select(Challenge).where(Challenge.slug == "final"))
        entered, refused = [], []
        for name, user_id in runners.items():
            try:
                challenges.register(final, db.session.get(User, user_id), {})
                entered.append(name)
            except challenges.ChallengeError as error:
                assert "qualification only" in str(error)
                refused.append(name)
        assert sorted(entered) == ["ana", "bea", "dan", "fin"] and sorted(refused) == ["cat", "eli"]
