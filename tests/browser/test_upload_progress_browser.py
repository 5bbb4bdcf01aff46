"""A zip of many activity files in a browser: the upload page sends the participant to the upload's progress
page, whose bar fills in by itself while a worker imports the files, and which then shows one result per file;
without JavaScript the refresh link does the same."""

import io
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_charts_and_progress_browser import _no_console_errors
from tests.support.jobs import run_queued_jobs
from tests.support.sweep import gpx_run

pytestmark = pytest.mark.browser

RUNS = 24  # more than the request imports itself (kindstride.activities.upload_jobs.BACKGROUND_FILES)


def _export():
    now = datetime.now(UTC).replace(microsecond=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(RUNS):
            archive.writestr(f"export/run-{n:02}.gpx", gpx_run(now - timedelta(hours=2 + n), km=2))
        archive.writestr("export/notes.txt", b"not an activity")
    return {"name": "export.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()}


def _upload(page, sites, slug):
    page.goto(sites.url(slug, "/activities/upload"))
    page.get_by_label(sites.t(slug, "Activity files")).set_input_files(_export())
    page.get_by_role("button", name=sites.t(slug, "Upload"), exact=True).click()
    page.locator("#job-progress").wait_for()
    assert "/activities/uploads/" in page.url


def test_a_zip_upload_shows_a_bar_that_fills_in_then_a_result_per_file(sites, desktop_page):
    page = desktop_page
    slug = "techrun"  # Vietnamese
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    sites.user(slug, "lan@techrun.example", "Lan Tran")
    errors = _no_console_errors(page)
    sign_in(page, sites, slug, "lan@techrun.example", "Lan Tran")
    _upload(page, sites, slug)
    total = RUNS + 1
    if sites.app.config["REDIS_URL"]:
        # Waiting for a worker: the page asks how far it has got, and loads itself again once it is done.
        assert page.locator("#job-text").inner_text() == t("Your files are uploaded and wait their turn to be read.")
        assert page.locator(".ks-outcomes").count() == 0
        screenshot(page, "techrun-upload-progress-01-queued")
        run_queued_jobs(sites.app)
    outcomes = page.locator(".ks-outcomes li")
    outcomes.first.wait_for()
    assert outcomes.count() == total
    assert page.locator(".ks-outcomes li.ks-ok").count() == RUNS
    assert page.locator(".ks-outcomes li.ks-error").inner_text().startswith("notes.txt: ")
    assert page.locator("#job-progress").evaluate("(bar) => [bar.value, bar.max]") == [total, total]
    assert page.locator("#job-text").inner_text() == t(
        "All %(total)s files are read: %(stored)s stored, %(duplicate)s uploaded before, %(refused)s refused.",
        total=total, stored=RUNS, duplicate=0, refused=1)
    assert not page.get_by_role("link", name=t("Refresh to see how far it has got")).is_visible()
    assert errors == []  # no script blocked by the content security policy, no error
    screenshot(page, "techrun-upload-progress-02-done")

    page.get_by_role("link", name=t("See my activities and their verdicts")).click()
    assert page.locator("article.ks-activity").count() == RUNS


def test_without_javascript_the_refresh_link_shows_how_far_it_has_got(sites, browser):
    slug = "shopfast"  # English
    t = lambda message, **params: sites.t(slug, message, **params)  # noqa: E731
    sites.user(slug, "an@shopfast.example", "An Nguyen")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, sites, slug, "an@shopfast.example", "An Nguyen")
        _upload(page, sites, slug)
        if sites.app.config["REDIS_URL"]:
            assert page.locator(".ks-outcomes").count() == 0
            run_queued_jobs(sites.app)
            page.get_by_role("link", name=t("Refresh to see how far it has got")).click()
        assert page.locator(".ks-outcomes li").count() == RUNS + 1
        assert "25 files are read" in page.locator("#job-text").inner_text()
    finally:
        context.close()
