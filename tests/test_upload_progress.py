"""A long upload (a zip of more files than the request imports itself) is imported by a job: the upload page
sends the participant to a progress page whose bar a script updates (a refresh does without it), and once the job
has ended the page lists one outcome per file: stored, uploaded before, or refused and why. Only the uploader
sees it; a retried job goes on after the files it has done; bytes that are gone are said to be gone."""

import io
import re
import zipfile
from datetime import timedelta

import sqlalchemy as sa

from kindstride.accounts.models import User
from kindstride.activities import upload_jobs
from kindstride.activities.models import Activity
from kindstride.activities.uploads import import_member, unpacked
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from kindstride.web import progress
from tests.support.jobs import run_queued_jobs
from tests.support.samples import SAMPLES, needs_samples
from tests.support.sweep import gpx_run
from tests.test_challenge_pages import NOW, _client, _text, site  # noqa: F401

RUNS = 30  # more than upload_jobs.BACKGROUND_FILES


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _export():
    """A bulk export: RUNS generated runs an hour apart, two real recordings, one of them twice, a broken
    recording, a note and a zip bomb. Returns (zip bytes, {file: expected status})."""
    members = [(f"runs/run-{n:02}.gpx", gpx_run(NOW - timedelta(hours=2 + n), km=3, name=f"Run {n}"))
               for n in range(RUNS)]
    members += [(name, (SAMPLES / name).read_bytes()) for name in (
        "tcx-tomtom-run-single-lap.tcx", "fit-garmin-fr110-run-5-laps.fit", "fit-strava-android-app-run-broken.fit")]
    copy = (SAMPLES / "fit-garmin-fr110-run-5-laps.fit").read_bytes()
    members += [("again/fr110-copy.fit", copy), ("notes.txt", b"my training notes"),
                ("bomb.gpx", b"\0" * 2_000_000)]
    expected = {f"run-{n:02}.gpx": "stored" for n in range(RUNS)}
    expected |= {"tcx-tomtom-run-single-lap.tcx": "stored", "fit-garmin-fr110-run-5-laps.fit": "stored",
                 "fit-strava-android-app-run-broken.fit": "refused", "fr110-copy.fit": "duplicate",
                 "notes.txt": "refused", "bomb.gpx": "refused"}
    return _zip(members), expected


def _post(client, *files):
    return client.submit("/activities/upload", {"files": [(io.BytesIO(data), name) for name, data in files]},
                         form_path="/activities/upload", content_type="multipart/form-data")


def _bar(html):
    found = re.search(r'<progress id="job-progress"[^>]*>', html)
    return found.group(0) if found else None


def _lines(html):
    """{file: (class, text after the name)} of the results list."""
    return {name: (css, rest) for css, name, rest in
            re.findall(r'<li class="(ks-ok|ks-error)">([^:<]+): (.*?)</li>', html, re.S)}


pytestmark = needs_samples


def test_a_zip_of_many_files_is_imported_by_a_job_with_a_progress_page(site, app, tenants, make_user):  # noqa: F811 (the fixture imported above)
    clients, _tokens = site
    an = clients["an"]
    archive, expected = _export()
    response = _post(an, ("export.zip", archive))
    assert response.status_code == 303
    page_path = response.headers["Location"]
    match = re.fullmatch(r"/activities/uploads/([A-Za-z0-9_-]{22})", page_path)
    assert match, page_path
    status_path = f"{page_path}/progress"

    if app.config["REDIS_URL"]:
        # Waiting for a worker: a bar that does not know its size yet, what is happening, a refresh link, the script.
        html = _text(an.get(page_path))
        assert 'value="' not in _bar(html) and "data-ks-progress-active" in html and "data-ks-progress-reload" in html
        assert "Your files are uploaded and wait their turn to be read." in html
        assert "Refresh to see how far it has got" in html and "kindstride-progress.js" in html
        assert "ks-outcomes" not in html
        status = an.get(status_path)
        assert status.headers["Cache-Control"] == "no-store"
        assert status.json["state"] == "queued" and status.json["active"] is True
        with tenant_scope(tenants["alpha"]):
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0  # nothing yet
        run_queued_jobs(app)

    total = len(expected)
    html = _text(an.get(page_path))
    assert f'max="{total}" value="{total}"' in _bar(html)
    assert "data-ks-progress-active" not in html and "Refresh to see how far it has got" not in html
    assert f"All {total} files are read: 32 stored, 1 uploaded before, 3 refused." in html
    lines = _lines(html)
    assert set(lines) == set(expected)
    for name, status in expected.items():
        css, rest = lines[name]
        if status == "refused":
            assert css == "ks-error" and len(rest) > len(name) + 10, (name, rest)  # says what is wrong
        else:
            word = "imported" if status == "stored" else "uploaded before"
            link = rf'<a href="/activities#activity-\d+">{word}</a>'
            assert css == "ks-ok" and re.fullmatch(link, rest), (name, rest)
    assert "zip archive" not in lines["notes.txt"][1] and "inflates more than" in lines["bomb.gpx"][1]
    status = an.get(status_path).json
    assert status == {"state": "done", "done": total, "total": total, "active": False, "percent": "100",
                      "text": f"All {total} files are read: 32 stored, 1 uploaded before, 3 refused."}
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 32
    assert "32 stored" in _text(an.get(page_path))  # the page stays, and says the same

    # Only the uploader: another participant, an admin of this site, anyone of another site: not found.
    assert clients["binh"].get(page_path).status_code == 404
    assert clients["binh"].get(status_path).status_code == 404
    assert clients["admin"].get(page_path).status_code == 404
    assert clients["anonymous"].get(page_path).status_code == 302
    make_user(tenants["beta"], "an@beta.example")
    beta = _client(app, "beta", "an@beta.example")
    assert beta.get(page_path).status_code == 404 and beta.get(status_path).status_code == 404
    assert an.get("/activities/uploads/not-an-upload-id").status_code == 404
    assert an.get("/activities/uploads/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404


def test_a_few_files_are_still_imported_in_the_request(site, app):  # noqa: F811 (the fixture imported above)
    clients, _tokens = site
    few = _zip([(f"run-{n}.gpx", gpx_run(NOW - timedelta(hours=2 + n), km=3)) for n in range(3)])
    response = _post(clients["an"], ("few.zip", few))
    assert response.status_code == 200
    assert len(re.findall(r'<li class="ks-ok">', _text(response))) == 3


def _user(email):
    return db.session.scalar(sa.select(User).where(User.email == email))


def test_a_retried_job_goes_on_after_the_files_it_has_done(site, app, tenants):  # noqa: F811 (the fixture imported above)
    clients, _tokens = site
    files = [(f"run-{n:02}.gpx", gpx_run(NOW - timedelta(hours=2 + n), km=3)) for n in range(RUNS)]
    with tenant_scope(tenants["alpha"]):
        user = _user("an@alpha.example")
        upload_id = "resumeResumeResume0001"
        upload_jobs.save(upload_id, files)
        progress.queued(upload_jobs.UPLOAD, upload_id, None, user_id=user.id)
        # A first attempt stored five files, then its worker died.
        tracker = progress.track(db.session(), upload_jobs.UPLOAD, upload_id, None, RUNS, until_commit=False,
                                 user_id=user.id)
        for member in unpacked(files)[:5]:
            tracker.step(result=import_member(user, member))
        tracker.finish(progress.FAILED)
        failed = clients["an"].get(f"/activities/uploads/{upload_id}/progress").json
        assert failed["state"] == "failed" and failed["done"] == 5 and failed["total"] == RUNS
        assert failed["text"] == f"The upload stopped after 5 of {RUNS} files. It is tried again in a few minutes."

        upload_jobs.import_upload(upload_id, user.id)  # rq runs it again
        db.session.commit()
        upload_jobs.import_upload(upload_id, user.id)  # and once more: it is done, nothing happens
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == RUNS
        assert upload_jobs.load(upload_id) is None  # the bytes are dropped once every file is done
    html = _text(clients["an"].get(f"/activities/uploads/{upload_id}"))
    assert f"All {RUNS} files are read: {RUNS} stored, 0 uploaded before, 0 refused." in html
    assert len(_lines(html)) == RUNS and "uploaded before</a>" not in html


def test_bytes_that_are_gone_are_said_to_be_gone(site, app, tenants):  # noqa: F811 (the fixture imported above)
    clients, _tokens = site
    files = [(f"run-{n:02}.gpx", gpx_run(NOW - timedelta(hours=2 + n), km=3)) for n in range(RUNS)]
    with tenant_scope(tenants["alpha"]):
        user = _user("an@alpha.example")
        upload_id = upload_jobs.start(user, files)
        upload_jobs.drop(upload_id)  # say, kept on a machine the worker cannot read from, or expired
        db.session.commit()
    run_queued_jobs(app)
    status = clients["an"].get(f"/activities/uploads/{upload_id}/progress").json
    assert status["state"] == "failed" and status["active"] is False
    assert status["text"] == "The uploaded files could not be read back. Please upload them again."
    assert "ks-job-failed" in _text(clients["an"].get(f"/activities/uploads/{upload_id}"))
