"""A participant's journey on a phone, in two tenants (two brands, two languages): sign up, confirm the email,
sign in, register for a challenge joining an existing team, upload a real watch recording, and find it on the
leaderboard and in "My activities" with its verdict; and many files uploaded at once, a result for each."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from babel.numbers import parse_decimal

from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.db import db
from tests.browser.conftest import screenshot, sign_in, unlabelled_fields
from tests.support.jobs import run_queued_jobs
from tests.support.samples import SAMPLES, needs_samples

GOOD_FIT = "fit-garmin-fr110-run-5-laps.fit"  # Garmin Forerunner 110, 2013-02-06, 4835.38 m
BROKEN_FIT = "fit-strava-android-app-run-broken.fit"  # FitParseError: local message 11 not defined

pytestmark = [pytest.mark.browser,
              needs_samples]

SLUG = "archive-run"
TITLE = {"techrun": "Chạy cùng kho lưu trữ", "shopfast": "Archive run"}


def archive_challenge(sites, slug):
    """A challenge counting 2010..2030 without a sync deadline (so old recordings count), with divisions,
    and a team "Rocket" in the first division that its captain made. Returns the captain's id."""
    now = datetime.now(UTC)
    captain_id = sites.user(slug, f"captain@{slug}.example", "Captain Lan")
    with sites.scope(slug):
        challenge = challenges.create_challenge({
            "slug": SLUG, "title": TITLE[slug], "sports": ["run", "walk", "ride"],
            "registration_opens_at": (now - timedelta(days=1)).isoformat(),
            "registration_closes_at": (now + timedelta(days=1)).isoformat(),
            "counting_start": "2010-01-01T00:00:00+00:00", "counting_end": "2030-01-01T00:00:00+00:00",
            "divisions": ["Company", "Sports Club", "School"], "goal_km": 100,
            "preset": None, "ruleset": {
                "validation": [{"rule": "allowed_sports", "params": {"sports": ["run", "walk", "ride"]}},
                               {"rule": "distance_limits", "params": {"min_m": 1000}}],
                "scoring": {"rule": "distance", "params": {}}, "multipliers": [],
                "team_aggregation": {"rule": "sum", "params": {}}}})
        company = challenges.divisions_of(challenge)[0]
        challenges.register(challenge, db.session.get(User, captain_id),
                            {"new_team": "Rocket", "division_id": company.id})
        db.session.commit()
    return captain_id


def km_in(text, locale):
    """The number of a "4,84" / "4.84" in the tenant's locale."""
    return float(parse_decimal(text.strip(), locale=locale, strict=True))


@pytest.mark.parametrize("slug", ["techrun", "shopfast"])  # Vietnamese and VND; English and USD
def test_sign_up_join_a_team_upload_a_watch_file_and_find_it_on_the_leaderboard(sites, page, mailbox, slug):
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    locale = sites.tenant(slug)["locale"]
    archive_challenge(sites, slug)
    app = sites.app

    # Sign up and confirm the email.
    page.goto(sites.url(slug, "/signup"))
    assert page.locator("html").get_attribute("lang") == locale
    assert unlabelled_fields(page, "main") == []
    page.get_by_label(t("Your name")).fill("Mai Trần")
    page.get_by_label(t("Email")).fill("mai@example.com")
    page.get_by_label(t("Password")).fill("a long enough password")
    screenshot(page, f"{slug}-participant-01-signup")
    page.get_by_role("button", name=t("Sign up")).click()
    page.get_by_role("heading", name=t("Check your email")).wait_for()
    screenshot(page, f"{slug}-participant-02-check-email")
    run_queued_jobs(app)
    link = re.search(r"http://\S+/confirm/\S+", mailbox.wait_for(1)[0].get_content()).group(0)
    assert link.startswith(sites.url(slug, "/confirm/"))  # the tenant's own address
    page.goto(link)
    page.get_by_role("button", name=t("Confirm my email")).click()
    page.get_by_role("link", name="Mai Trần").wait_for()

    # Sign out, then sign in with the password.
    page.get_by_role("button", name=t("Sign out")).click()
    sign_in(page, sites, slug, "mai@example.com", "Mai Trần", password="a long enough password")
    screenshot(page, f"{slug}-participant-03-signed-in")

    # The tenant's home lists the challenge; its page offers to register.
    page.goto(sites.url(slug, "/"))
    page.get_by_role("link", name=TITLE[slug]).first.click()
    page.get_by_role("heading", name=TITLE[slug], level=1).wait_for()
    screenshot(page, f"{slug}-participant-04-challenge")
    page.get_by_role("link", name=t("Register"), exact=True).click()

    # Register, joining the captain's team.
    page.get_by_role("heading", name=t("Register for %(title)s", title=TITLE[slug])).wait_for()
    assert unlabelled_fields(page, "main") == []
    page.get_by_label(t("Join a team"), exact=True).check()
    rocket = page.locator("#f-team_id option", has_text="Rocket")
    assert "Company" in rocket.inner_text() and t("full") not in rocket.inner_text()
    page.get_by_label(t("Team"), exact=True).select_option(rocket.get_attribute("value"))
    page.get_by_label(t("Gender")).select_option("female")
    page.get_by_label(t("Year of birth")).fill("1992")
    screenshot(page, f"{slug}-participant-05-register")
    page.get_by_role("button", name=t("Register"), exact=True).click()
    flash = page.locator(".ks-flash-success")
    assert flash.inner_text() == t("You are registered for %(title)s. Your bib number is %(bib)s.",
                                   title=TITLE[slug], bib=2)
    mine = page.locator("section.ks-mine-card")
    assert mine.get_by_role("link", name="Rocket").is_visible()
    screenshot(page, f"{slug}-participant-06-registered")

    # Upload the watch's FIT file.
    mine.get_by_role("link", name=t("Upload activities")).click()
    page.get_by_role("heading", name=t("Upload activities")).wait_for()
    assert unlabelled_fields(page, "main") == []
    page.get_by_label(t("Activity files")).set_input_files(SAMPLES / GOOD_FIT)
    page.get_by_role("button", name=t("Upload"), exact=True).click()
    outcomes = page.locator(".ks-outcomes li")
    outcomes.first.wait_for()
    assert outcomes.count() == 1
    assert outcomes.first.inner_text() == f"{GOOD_FIT}: {t('imported')}"
    assert "ks-ok" in outcomes.first.get_attribute("class")
    screenshot(page, f"{slug}-participant-07-upload-result")

    # The verdict is a job; then the participant is on the leaderboard with the file's distance.
    run_queued_jobs(app)
    page.goto(sites.url(slug, f"/challenges/{SLUG}/leaderboard"))
    me = page.locator("tr[aria-current='true']")
    distance_label = t("Distance (km)")
    assert me.locator(f"td[data-label='{t('Name')}']").inner_text() == "Mai Trần"
    assert me.locator(f"td[data-label='{t('Team')}']").inner_text() == "Rocket"
    assert me.locator(f"td[data-label='{t('Rank')}']").inner_text() == "1"
    distance = me.locator(f"td[data-label='{distance_label}']").inner_text()
    assert re.fullmatch(r"4[.,]8\d", distance), distance
    assert km_in(distance, locale) == pytest.approx(4.835, abs=0.006)  # 4835 m in the tenant's numbers
    screenshot(page, f"{slug}-participant-08-leaderboard")

    # The search finds her by name and by bib.
    page.get_by_label(t("Name or bib")).fill("2")
    page.get_by_label(t("Name or bib")).press("Enter")
    page.wait_for_url(re.compile(r"q=2"))
    assert page.locator(f"td[data-label='{t('Name')}']").all_inner_texts() == ["Mai Trần"]

    # My activities: the file, its distance, and the verdict in this challenge.
    page.get_by_role("link", name=t("My activities")).first.click()
    page.get_by_role("heading", name=t("My activities"), level=1).wait_for()
    activity = page.locator("article.ks-activity")
    assert activity.count() == 1
    heading = activity.locator("h2").inner_text()
    assert heading.startswith(f"{t('Run')} · {distance} km"), heading
    assert GOOD_FIT in activity.inner_text()
    verdict = activity.locator("section.ks-verdict")
    assert verdict.get_by_role("link", name=TITLE[slug]).is_visible()
    assert verdict.locator(".ks-status").inner_text() == t("Counted")
    assert "ks-verdict-accepted" in verdict.get_attribute("class")
    screenshot(page, f"{slug}-participant-09-my-activities")

    # The challenge page counts her kilometres toward the goal, and her team's.
    page.goto(sites.url(slug, f"/challenges/{SLUG}"))
    assert km_in(page.locator("section.ks-mine-card dd").nth(2).inner_text(), locale) == pytest.approx(4.835,
                                                                                                      abs=0.006)
    assert "Rocket" in page.locator("table.ks-board").nth(1).inner_text()
    screenshot(page, f"{slug}-participant-10-challenge-progress")


def test_many_files_at_once_get_a_result_each(sites, page):
    slug = "shopfast"
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    archive_challenge(sites, slug)
    runner_id = sites.user(slug, "binh@example.com", "Binh Le")
    with sites.scope(slug):
        challenges.register(challenges.get_challenge(SLUG), db.session.get(User, runner_id), {})
        db.session.commit()
    sign_in(page, sites, slug, "binh@example.com", "Binh Le")

    page.goto(sites.url(slug, "/activities/upload"))
    files = page.get_by_label(t("Activity files"))
    assert files.get_attribute("multiple") is not None
    files.set_input_files([SAMPLES / GOOD_FIT, SAMPLES / BROKEN_FIT])
    page.get_by_role("button", name=t("Upload"), exact=True).click()
    outcomes = page.locator(".ks-outcomes li")
    outcomes.first.wait_for()
    assert outcomes.count() == 2  # one line per file
    lines = dict(zip(outcomes.all_inner_texts(), [o.get_attribute("class") for o in outcomes.all()], strict=True))
    good = next(line for line in lines if line.startswith(GOOD_FIT))
    broken = next(line for line in lines if line.startswith(BROKEN_FIT))
    assert good == f"{GOOD_FIT}: {t('imported')}" and lines[good] == "ks-ok"
    assert lines[broken] == "ks-error" and len(broken) > len(BROKEN_FIT) + 10  # says what is wrong
    assert page.get_by_role("status").filter(has_text=BROKEN_FIT).is_visible()  # announced to screen readers
    screenshot(page, "shopfast-upload-two-files")

    run_queued_jobs(sites.app)
    page.get_by_role("link", name=t("See my activities and their verdicts")).click()
    assert page.locator("article.ks-activity").count() == 1  # only the good file became an activity
    assert page.locator("article.ks-activity .ks-status").inner_text() == t("Counted")
