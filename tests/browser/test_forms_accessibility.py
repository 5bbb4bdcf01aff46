"""Accessibility basics of the forms, on a phone: every field has an accessible name of its own (a <label>,
aria-label or aria-labelledby), and the sign-up, register and upload forms can be filled and sent with the
keyboard alone (Tab, arrows, Space, Enter), with a visible focus indicator at every stop."""

from datetime import UTC, datetime, timedelta

import pytest

from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.db import db
from tests.browser.conftest import screenshot, sign_in, tab_to, unlabelled_fields, visible_fields
from tests.support.samples import SAMPLES, needs_samples

pytestmark = pytest.mark.browser

NOW = datetime.now(UTC).replace(microsecond=0)
# The fundraising pages (being built): checked when they are there.
MONEY_PAGES = ("/challenges/keyboard-run/donate", "/challenges/keyboard-run/my-page",
               "/challenges/keyboard-run/pledges", "/sponsor/pledges", "/admin/money/", "/admin/branding")


def _challenge(sites, slug):
    """A challenge open for registration, with divisions and a team "Rocket" of one member."""
    captain_id = sites.user(slug, f"captain@{slug}.example", "Captain Lan")
    with sites.scope(slug):
        challenge = challenges.create_challenge({
            "slug": "keyboard-run", "title": "Keyboard run", "sports": ["run"],
            "registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
            "counting_start": (NOW - timedelta(days=1)).isoformat(),
            "counting_end": (NOW + timedelta(days=9)).isoformat(), "preset": "vn-charity-run-2024",
            "divisions": ["Company", "School"]})
        challenges.register(challenge, db.session.get(User, captain_id),
                            {"new_team": "Rocket", "division_id": challenges.divisions_of(challenge)[0].id})
        db.session.commit()


def _focused(page):
    return page.evaluate("document.activeElement && (document.activeElement.id || document.activeElement.name)")


def test_sign_up_with_the_keyboard_only(sites, page):
    slug = "techrun"  # Vietnamese
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    page.goto(sites.url(slug, "/signup"))
    assert visible_fields(page, "main form") == 3
    assert unlabelled_fields(page) == []

    # The first Tab stop is the skip link, shown when focused; it leads past the header.
    page.keyboard.press("Tab")
    skip = page.locator("a.ks-skip")
    assert page.evaluate("document.activeElement.className") == "ks-skip"
    box = skip.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0  # on screen now
    screenshot(page, "techrun-keyboard-skip-link")
    page.keyboard.press("Enter")
    tab_to(page, "#f-name", presses=3)  # the first field of the page's content

    page.keyboard.type("Lê Thu")
    page.keyboard.press("Tab")
    assert _focused(page) == "f-email"
    page.keyboard.type("thu@example.com")
    page.keyboard.press("Tab")
    assert _focused(page) == "f-password"
    page.keyboard.type("short")
    page.keyboard.press("Enter")  # Enter in a field sends the form
    error = page.locator("#e-password")
    error.wait_for()
    password = page.get_by_label(t("Password"))
    assert password.get_attribute("aria-invalid") == "true"
    assert password.get_attribute("aria-describedby") == "e-password"  # the error is read with the field
    screenshot(page, "techrun-keyboard-signup-error")

    tab_to(page, "#f-password")
    page.keyboard.type("a long enough password")
    tab_to(page, "main form button[type=submit]", presses=2)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=t("Check your email")).wait_for()


def test_register_with_the_keyboard_only(sites, page):
    slug = "shopfast"
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    _challenge(sites, slug)
    sites.user(slug, "kim@example.com", "Kim Pham")
    sign_in(page, sites, slug, "kim@example.com", "Kim Pham")
    page.goto(sites.url(slug, "/challenges/keyboard-run/register"))
    assert visible_fields(page, "main form") >= 9  # 4 ways, team, code, name, division, gender, year
    assert unlabelled_fields(page) == []

    # A radio group is one Tab stop; the arrows choose within it.
    tab_to(page, "#mode-alone")
    page.keyboard.press("ArrowDown")
    assert _focused(page) == "mode-join" and page.locator("#mode-join").is_checked()
    page.keyboard.press("Tab")
    assert _focused(page) == "f-team_id"
    page.keyboard.press("ArrowDown")  # the first team
    assert "Rocket" in page.locator("#f-team_id option:checked").inner_text()
    tab_to(page, "#f-gender")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    assert _focused(page) == "f-birth_year"
    page.keyboard.type("1988")
    screenshot(page, "shopfast-keyboard-register")
    page.keyboard.press("Enter")
    page.locator(".ks-flash-success").wait_for()
    assert page.locator(".ks-flash-success").inner_text() == t(
        "You are registered for %(title)s. Your bib number is %(bib)s.", title="Keyboard run", bib=2)
    assert page.locator("section.ks-mine-card").get_by_role("link", name="Rocket").is_visible()


@needs_samples
def test_upload_with_the_keyboard_only(sites, page):
    slug = "shopfast"
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    _challenge(sites, slug)
    sites.user(slug, "kim@example.com", "Kim Pham")
    sign_in(page, sites, slug, "kim@example.com", "Kim Pham")
    page.goto(sites.url(slug, "/activities/upload"))
    assert visible_fields(page, "main form") == 1
    assert unlabelled_fields(page) == []

    tab_to(page, "#f-files")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")  # opens the system's file chooser
    chooser.value.set_files([SAMPLES / "tcx-tomtom-run-single-lap.tcx", SAMPLES / "gpx-garmin-connect-run-2012.gpx"])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    page.keyboard.press("Enter")
    outcomes = page.locator(".ks-outcomes li")
    outcomes.first.wait_for()
    assert sorted(outcomes.all_inner_texts()) == [f"gpx-garmin-connect-run-2012.gpx: {t('imported')}",
                                                  f"tcx-tomtom-run-single-lap.tcx: {t('imported')}"]
    # The result links are reachable with the keyboard too.
    tab_to(page, ".ks-outcomes a")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=t("My activities"), level=1).wait_for()
    assert page.locator("article.ks-activity").count() == 2


def test_every_form_field_of_the_site_has_a_label(sites, page):
    """Every page with a form, as an admin who takes part: no field without a name of its own."""
    slug = "shopfast"
    _challenge(sites, slug)
    admin_id = sites.user(slug, "admin@shopfast.example", "Hoa Admin", roles=("participant", "admin"))
    with sites.scope(slug):
        challenge = challenges.get_challenge("keyboard-run")
        challenges.register(challenge, db.session.get(User, admin_id), {})
        db.session.commit()
    for path in ("/signup", "/signin", "/password/forgot"):
        page.goto(sites.url(slug, path))
        assert unlabelled_fields(page) == [], path
    sign_in(page, sites, slug, "admin@shopfast.example", "Hoa Admin")
    missing = {}
    for path in ("/", "/account", "/challenges/keyboard-run", "/challenges/keyboard-run/leaderboard",
                 "/challenges/keyboard-run/teams", "/challenges/keyboard-run/team", "/activities",
                 "/activities/new", "/activities/upload", "/admin/challenges/", "/admin/challenges/new",
                 "/admin/challenges/keyboard-run/ruleset", "/admin/challenges/keyboard-run/review", "/admin/members/",
                 *MONEY_PAGES):
        response = page.goto(sites.url(slug, path))
        if path in MONEY_PAGES and response.status == 404:
            continue  # not built yet
        assert response.ok, (path, response.status)
        # Closed <details> (the ruleset's JSON editor, a version's rules) are opened: their fields count too.
        page.evaluate("document.querySelectorAll('details').forEach((d) => d.open = true)")
        if unlabelled_fields(page):
            missing[path] = unlabelled_fields(page)
    assert missing == {}
