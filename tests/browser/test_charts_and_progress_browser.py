"""What a browser shows of the charts and of a long job's progress: the challenge page draws the km per day
and a runner's running total (uPlot, from the page's data, under the site's script-src 'self' policy) and
folds the table of figures away; the admin's ruleset page shows the re-evaluation as a bar that fills in by
itself once a worker has done the job."""

from datetime import UTC, datetime, timedelta

import pytest

from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.db import db
from tests.browser.conftest import screenshot, sign_in
from tests.support.jobs import run_queued_jobs

pytestmark = pytest.mark.browser

NOW = datetime.now(UTC).replace(microsecond=0)
SLUG = "charts-2024"


def _challenge(sites, slug, runners):
    """A challenge that started four days ago with every runner registered; returns nothing."""
    with sites.scope(slug):
        challenge = challenges.create_challenge({
            "slug": SLUG, "title": "Km every day", "sports": ["run"],
            "registration_opens_at": (NOW - timedelta(days=10)).isoformat(),
            "registration_closes_at": (NOW + timedelta(days=10)).isoformat(),
            "counting_start": (NOW - timedelta(days=4)).isoformat(),
            "counting_end": (NOW + timedelta(days=20)).isoformat(), "goal_km": 100, "preset": None,
            "ruleset": {"validation": [{"rule": "distance_limits", "params": {"min_m": 1000}}],
                        "scoring": {"rule": "distance", "params": {}}, "multipliers": [],
                        "team_aggregation": {"rule": "sum", "params": {}}}})
        for user_id in runners:
            challenges.register(challenge, db.session.get(User, user_id), {})
        db.session.commit()


def _run(sites, slug, user_id, hours_ago, km):
    body = {"sport": "run", "start": (NOW - timedelta(hours=hours_ago)).isoformat(), "moving_s": km * 330,
            "distance_m": km * 1000, "has_gps": True, "split_paces_s_per_km": [330] * int(km)}
    response = sites.api(slug).post("/api/v1/activities", json=body, headers=sites.api_headers(slug, user_id))
    assert response.status_code == 201, response.json


def _no_console_errors(page):
    """Script errors, policy violations and failed loads of the page's own files, as they happen."""
    errors = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    return errors


def test_challenge_page_draws_km_per_day_and_my_running_total(sites, page):
    slug = "techrun"  # Vietnamese
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    lan = sites.user(slug, "lan@techrun.example", "Lan Tran")
    minh = sites.user(slug, "minh@techrun.example", "Minh Do")
    _challenge(sites, slug, [lan, minh])
    _run(sites, slug, lan, 50, 5)
    _run(sites, slug, lan, 26, 3)
    _run(sites, slug, minh, 26, 10)
    run_queued_jobs(sites.app)
    errors = _no_console_errors(page)

    page.goto(sites.url(slug, f"/challenges/{SLUG}"))
    daily = page.locator("#daily-km-chart")
    daily.locator("canvas").wait_for()  # drawn by uPlot
    box = daily.locator("canvas").bounding_box()
    assert box["width"] > 200 and box["height"] > 100
    assert daily.locator(".u-legend").inner_text().find(t("Kilometres per day")) >= 0
    table = page.locator("figure", has=daily).locator("details")
    assert not table.evaluate("(details) => details.open")  # folded away once the chart is drawn
    table.locator("summary").click()
    cells = table.locator("td").all_inner_texts()
    assert "13,0" in cells and "5,0" in cells  # Vietnamese decimals
    assert errors == []  # no script blocked by the content security policy, no error
    screenshot(page, "techrun-chart-01-km-per-day")

    sign_in(page, sites, slug, "lan@techrun.example", "Lan Tran")
    page.goto(sites.url(slug, f"/challenges/{SLUG}"))
    mine = page.locator("#my-progress-chart")
    mine.locator("canvas").wait_for()
    assert t("Your kilometres so far") in mine.locator(".u-legend").inner_text()
    figure = page.locator("figure", has=mine)
    assert figure.locator("figcaption").inner_text() == t("Your kilometres, added up day by day")
    assert figure.locator("tbody tr").last.locator("td").last.text_content() == "8,0"  # in the folded table
    assert errors == []
    screenshot(page, "techrun-chart-02-my-progress")


def test_without_javascript_the_figures_are_a_table(sites, browser):
    slug = "shopfast"  # English
    runner = sites.user(slug, "an@shopfast.example", "An Nguyen")
    _challenge(sites, slug, [runner])
    _run(sites, slug, runner, 26, 7)
    run_queued_jobs(sites.app)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(sites.url(slug, f"/challenges/{SLUG}"))
        figure = page.locator("figure", has=page.locator("#daily-km-chart"))
        assert figure.locator("canvas").count() == 0
        assert figure.locator("details").evaluate("(details) => details.open")
        assert "7.0" in figure.locator("tbody").inner_text()
    finally:
        context.close()


def test_ruleset_page_shows_the_re_evaluation_as_a_bar_that_fills_in(sites, desktop_page):
    page = desktop_page
    slug = "shopfast"
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    sites.user(slug, "admin@shopfast.example", "Hoa Admin", roles=("participant", "admin"))
    runners = [sites.user(slug, f"r{n}@shopfast.example", f"Runner {n}") for n in range(3)]
    _challenge(sites, slug, runners)
    for number, user_id in enumerate(runners):
        _run(sites, slug, user_id, 30, 2 + number * 3)
    run_queued_jobs(sites.app)
    errors = _no_console_errors(page)

    sign_in(page, sites, slug, "admin@shopfast.example", "Hoa Admin")
    page.goto(sites.url(slug, f"/admin/challenges/{SLUG}/ruleset"))
    assert page.locator("#job-progress").count() == 0  # nothing running
    editor = page.locator("form.ks-ruleset")
    editor.locator('[id="f-p.validation.distance_limits.min_m"]').fill("4000")
    editor.get_by_role("button", name=t("Save as new version")).click()
    page.locator(".ks-flash-success").wait_for()
    bar = page.locator("#job-progress")
    assert bar.is_visible()
    status = page.locator("#job-text")
    if sites.app.config["REDIS_URL"]:
        # Queued for a worker: the page asks how far it has got and fills the bar in by itself.
        assert status.inner_text() == t("Version %(version)s: waiting to judge every activity again.", version=2)
        screenshot(page, "shopfast-progress-01-queued")
        run_queued_jobs(sites.app)
        page.locator("[data-ks-progress-state='done']").wait_for()
    assert bar.evaluate("(bar) => [bar.value, bar.max]") == [3, 3]
    assert status.inner_text() == t("Version %(version)s: every activity is judged again (%(total)s participants). "
                                     "The leaderboards are up to date.", version=2, total=3)
    assert not page.get_by_role("link", name=t("Refresh to see how far it has got")).is_visible()
    assert errors == []
    screenshot(page, "shopfast-progress-02-done")
