"""Progress of judging every activity again after a ruleset change: a bar on the admin's ruleset page and the
same figures as JSON for the script that updates it. The bar says done only once the results are committed,
and one tenant never sees another's."""

import re

import sqlalchemy as sa

from kindstride.activities.evaluation import reevaluate_challenge
from kindstride.challenges.models import Challenge
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.support.jobs import run_queued_jobs
from tests.test_challenge_pages import (  # noqa: F401 (site: the fixture)
    _client,
    _text,
    create_challenge,
    ruleset_form,
    site,
    two_runners_judged,
)


def _bar(html):
    found = re.search(r'<progress id="job-progress"[^>]*>', html)
    return found.group(0) if found else None


def _save_version_2(admin):
    page = admin.get("/admin/challenges/run-2024/ruleset")
    saved = admin.submit("/admin/challenges/run-2024/ruleset", ruleset_form(
        page, **{"p.validation.distance_limits.min_m": "5000", "action": "save", "note": "5 km minimum"}))
    assert saved.status_code == 302


def test_ruleset_page_shows_the_re_evaluation_until_it_is_done(site, app):  # noqa: F811 (the fixture imported above)
    clients, tokens = site
    admin = clients["admin"]
    two_runners_judged(clients, tokens, app)
    html = _text(admin.get("/admin/challenges/run-2024/ruleset"))
    assert _bar(html) is None  # no job since version 1

    _save_version_2(admin)
    html = _text(admin.get("/admin/challenges/run-2024/ruleset"))
    if app.config["REDIS_URL"]:
        # Queued for a worker: a bar that does not know its size yet, a note, a link and the script.
        assert 'value="' not in _bar(html)
        assert "Version 2: waiting to judge every activity again." in html
        assert "Refresh to see how far it has got" in html and "kindstride-progress.js" in html
        status = admin.get("/admin/challenges/run-2024/ruleset/progress").json
        assert status["state"] == "queued" and status["active"] is True
        run_queued_jobs(app)
        html = _text(admin.get("/admin/challenges/run-2024/ruleset"))
    assert 'max="2" value="2"' in _bar(html)
    assert "Version 2: every activity is judged again (2 participants). The leaderboards are up to date." in html
    assert "Refresh to see how far it has got" not in html
    status = admin.get("/admin/challenges/run-2024/ruleset/progress")
    assert status.headers["Cache-Control"] == "no-store"
    assert status.json == {"state": "done", "done": 2, "total": 2, "active": False, "percent": "100",
                           "text": "Version 2: every activity is judged again (2 participants). "
                                   "The leaderboards are up to date."}
    board = _text(clients["anonymous"].get("/challenges/run-2024/leaderboard"))
    assert re.findall(r'data-label="Distance \(km\)" class="ks-num">([^<]+)<', board) == ["12.0", "0.0"]

    # Only admins, and only this tenant's.
    assert clients["mod"].get("/admin/challenges/run-2024/ruleset/progress").status_code == 403
    assert clients["anonymous"].get("/admin/challenges/run-2024/ruleset/progress").status_code in (302, 401, 403)


def test_the_bar_says_done_only_after_the_commit_and_failed_after_a_rollback(site, app, tenants):  # noqa: F811 (the fixture imported above)
    clients, tokens = site
    admin = clients["admin"]
    create_challenge(admin)
    for name in ("an", "binh"):
        clients[name].submit("/challenges/run-2024/register", {"mode": "alone"})
    _save_version_2(admin)
    run_queued_jobs(app)

    with tenant_scope(tenants["alpha"]):
        challenge_id = db.session.scalar(sa.select(Challenge.id).where(Challenge.slug == "run-2024"))
        reevaluate_challenge(challenge_id, 2)  # the job's work, its transaction still open
        status = admin.get("/admin/challenges/run-2024/ruleset/progress").json
        assert status["state"] == "running" and status["total"] == 2 and status["active"] is True
        assert "judging every activity again" in status["text"] and "of 2 participants done" in status["text"]
        html = _text(admin.get("/admin/challenges/run-2024/ruleset"))
        assert 'max="2"' in _bar(html) and "data-ks-progress-active" in html
        db.session.rollback()  # the job failed: rq tries it again later
    status = admin.get("/admin/challenges/run-2024/ruleset/progress").json
    assert status["state"] == "failed" and status["active"] is False
    assert "It is tried again in a few minutes." in status["text"]
    assert "ks-job-failed" in _text(admin.get("/admin/challenges/run-2024/ruleset"))

    with tenant_scope(tenants["alpha"]):
        reevaluate_challenge(challenge_id, 2)
        db.session.commit()
    assert admin.get("/admin/challenges/run-2024/ruleset/progress").json["state"] == "done"


def test_another_tenants_admin_sees_no_progress(site, app, tenants, make_user):  # noqa: F811 (the fixture imported above)
    clients, _tokens = site
    create_challenge(clients["admin"])
    _save_version_2(clients["admin"])
    run_queued_jobs(app)
    make_user(tenants["beta"], "admin@beta.example", roles=("participant", "admin"))
    beta = _client(app, "beta", "admin@beta.example")
    assert beta.get("/admin/challenges/run-2024/ruleset/progress").status_code == 404
    create_challenge(beta)  # the same slug, its own challenge: version 1, no job
    assert beta.get("/admin/challenges/run-2024/ruleset/progress").json["state"] is None
    assert _bar(_text(beta.get("/admin/challenges/run-2024/ruleset"))) is None
