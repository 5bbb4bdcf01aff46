"""A tenant admin's journey on a desktop: create a challenge from a preset through the builder, change a rule
in the ruleset editor with a dry run first, save it as a new version, then accept a flagged activity in the
review queue and see it count on the leaderboard."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.db import db
from tests.browser.conftest import screenshot, sign_in, unlabelled_fields
from tests.support.jobs import run_queued_jobs

pytestmark = pytest.mark.browser

SLUG = "shopfast"  # English, USD, Asia/Singapore
NOW = datetime.now(UTC).replace(microsecond=0)
PRESET_LABEL = "Nationwide charity run (2024 rules)"  # vn-charity-run-2024
MIN_M = '[id="f-p.validation.distance_limits.min_m"]'


def _local(moment, zone):
    """A moment as a datetime-local input's value, in the challenge's zone."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


def _run(sites, user_id, hours_ago, km, pace_s, splits):
    """An activity sent by a connected app through the REST API."""
    body = {"sport": "run", "start": (NOW - timedelta(hours=hours_ago)).isoformat(), "moving_s": km * pace_s,
            "distance_m": km * 1000, "has_gps": True, "split_paces_s_per_km": splits}
    response = sites.api(SLUG).post("/api/v1/activities", json=body, headers=sites.api_headers(SLUG, user_id))
    assert response.status_code == 201, response.json


def _stat(page, scope, term):
    """The <dd> of a <dl> term in `scope`."""
    return page.locator(scope).locator("div", has=page.locator("dt", has_text=term)).locator("dd").inner_text()


def test_admin_creates_from_a_preset_changes_a_rule_with_a_dry_run_and_moderates(sites, desktop_page):
    page = desktop_page
    t = lambda message, **params: sites.t(SLUG, message, **params)  # noqa: E731
    zone = sites.tenant(SLUG)["timezone"]
    sites.user(SLUG, "admin@shopfast.example", "Hoa Admin", roles=("participant", "admin"))
    sign_in(page, sites, SLUG, "admin@shopfast.example", "Hoa Admin")

    # The builder, reached from the console.
    page.get_by_role("link", name=t("Manage challenges")).click()
    page.get_by_role("heading", name=t("Challenges"), level=1).wait_for()
    page.get_by_role("link", name=t("New challenge")).click()
    page.get_by_role("heading", name=t("New challenge"), level=1).wait_for()
    assert unlabelled_fields(page, "main") == []
    assert page.get_by_label(t("Time zone")).input_value() == zone  # the tenant's zone by default
    page.get_by_label(t("Title")).fill("Run for small sellers")
    page.get_by_label(t("Address name")).fill("sellers-2024")
    page.get_by_label(t("Description")).fill("Every kilometre funds a digital-skills class.\nSundays count double.")
    assert page.get_by_label(t("Run"), exact=True).is_checked()
    page.get_by_label(t("Goal in kilometres (optional)")).fill("2000")
    page.get_by_label(t("Registration opens")).fill(_local(NOW - timedelta(days=10), zone))
    page.get_by_label(t("Registration closes")).fill(_local(NOW + timedelta(days=10), zone))
    page.get_by_label(t("Activities count from")).fill(_local(NOW - timedelta(days=5), zone))
    page.get_by_label(t("Activities count until")).fill(_local(NOW + timedelta(days=20), zone))
    page.get_by_label(t("Team divisions (one per line, optional)")).fill("Warehouse\nOffice\nDrivers")
    page.get_by_label(PRESET_LABEL, exact=True).check()
    screenshot(page, "shopfast-admin-01-builder")
    page.get_by_role("button", name=t("Create the challenge")).click()
    page.wait_for_url(sites.url(SLUG, "/challenges/sellers-2024"))
    assert page.locator(".ks-flash-success").inner_text() == t("The challenge %(title)s is created.",
                                                               title="Run for small sellers")
    screenshot(page, "shopfast-admin-02-created")

    # Two runners take part: a 3 km run the preset accepts, a 6 km run without splits that it flags.
    runners = {name: sites.user(SLUG, f"{name.split()[0].lower()}@example.com", name)
               for name in ("An Nguyen", "Binh Le")}
    with sites.scope(SLUG):
        challenge = challenges.get_challenge("sellers-2024")
        assert [d.name for d in challenges.divisions_of(challenge)] == ["Warehouse", "Office", "Drivers"]
        assert challenge.counting_start == NOW.replace(second=0) - timedelta(days=5)  # read in the zone
        for user_id in runners.values():
            challenges.register(challenge, db.session.get(User, user_id), {})
        db.session.commit()
    _run(sites, runners["An Nguyen"], 30, 3, 300, [300] * 3)
    _run(sites, runners["Binh Le"], 10, 6, 330, [])
    run_queued_jobs(sites.app)

    # The ruleset editor: raise the minimum distance to 5 km and try it first.
    page.get_by_role("link", name=t("Manage challenges")).click()
    row = page.locator("tr", has_text="sellers-2024")
    row.get_by_role("link", name=t("Version %(version)s", version=1)).click()
    page.get_by_role("heading", name=t("Ruleset of %(title)s", title="Run for small sellers")).wait_for()
    assert unlabelled_fields(page, "main") == []
    editor = page.locator("form.ks-ruleset")
    assert editor.locator(MIN_M).input_value() == "1000"  # from the preset
    assert editor.get_by_label(re.compile(r"\bdistance_limits$")).is_checked()  # the rule is in use
    screenshot(page, "shopfast-admin-03-ruleset-editor")
    editor.locator(MIN_M).fill("5000")
    editor.get_by_role("button", name=t("Dry run")).click()
    dry = page.locator("section.ks-dry-run")
    dry.wait_for()
    assert dry.get_by_role("heading").inner_text() == t("Dry run: nothing was saved")
    assert _stat(page, "section.ks-dry-run", t("Activities that would change")) == "1"
    assert _stat(page, "section.ks-dry-run", t("Participants whose score would change")) == "1"
    example = dry.locator("tbody tr")
    assert example.count() == 1 and "An Nguyen" in example.inner_text()
    assert editor.locator(MIN_M).input_value() == "5000"  # the proposal is kept
    assert t("Current version: %(version)s.", version=1) in page.locator("main").inner_text()  # nothing saved
    screenshot(page, "shopfast-admin-04-dry-run")

    editor.get_by_label(t("What changed (kept in the version history)")).fill("5 km minimum")
    editor.get_by_role("button", name=t("Save as new version")).click()
    page.locator(".ks-flash-success").wait_for()
    assert page.locator(".ks-flash-success").inner_text().startswith(t(
        "Version %(version)s is saved. Every activity of the challenge is being judged again with it; the "
        "leaderboards update when that is done.", version=2)[:20])
    run_queued_jobs(sites.app)  # the re-judging job
    page.reload()
    assert t("Current version: %(version)s.", version=2) in page.locator("main").inner_text()
    history = page.locator("tr[aria-current='true']")
    assert "5 km minimum" in history.inner_text() and "Hoa Admin" in history.inner_text()
    assert page.locator(MIN_M).input_value() == "5000"
    screenshot(page, "shopfast-admin-05-version-2")

    # The review queue: Binh's run without splits waits for a moderator.
    page.get_by_role("link", name=t("Challenges"), exact=True).first.click()
    row = page.locator("tr", has_text="sellers-2024")
    row.get_by_role("link", name=re.compile(r"^1 ")).click()
    page.get_by_role("heading", name=t("Activities to review")).wait_for()
    assert unlabelled_fields(page, "main") == []
    item = page.locator("article.ks-review")
    assert item.count() == 1
    assert item.get_by_role("heading").inner_text() == f"Binh Le · {t('bib %(bib)s', bib=2)}"
    assert "no per-kilometre data" in item.locator(".ks-reasons").inner_text()
    screenshot(page, "shopfast-admin-06-review-queue")
    item.get_by_label(t("Comment (required to reject)")).fill("Watch data checked by hand")
    item.get_by_role("button", name=t("Accept")).click()
    assert page.locator(".ks-flash-success").inner_text() == t("Activity accepted: it counts now.")
    assert page.get_by_text(t("Nothing to review.")).is_visible()
    screenshot(page, "shopfast-admin-07-review-done")

    # The leaderboard: Binh's 6 km count; An's 3 km no longer do (below the new 5 km minimum).
    page.goto(sites.url(SLUG, "/challenges/sellers-2024/leaderboard"))
    names = page.locator(f"tbody td[data-label='{t('Name')}']").all_inner_texts()
    distances = page.locator(f"tbody td[data-label='{t('Distance (km)')}']").all_inner_texts()
    assert list(zip(names, distances, strict=True)) == [("Binh Le", "6.0"), ("An Nguyen", "0.0")]
    screenshot(page, "shopfast-admin-08-leaderboard")
