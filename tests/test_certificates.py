"""Finisher certificates: the PDF from the API and the site, its QR link to the public check page, signed codes
that neither tampering nor another tenant's site accept, and no certificate without counted kilometres."""

import re
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from reportlab.pdfbase import pdfmetrics

from kindstride.accounts.models import User
from kindstride.challenges import certificates
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.conftest import BASE_DOMAIN, sign_in
from tests.support.i18n import vi_part
from tests.support.jobs import run_queued_jobs
from tests.test_challenges import NOW, _challenge, _token

VIETNAMESE_NAME = "Nguyễn Thị Ánh"


def _rename(tenant_id, user_id, name):
    with tenant_scope(tenant_id):
        db.session.get(User, user_id).name = name
        db.session.commit()


def _run(client, headers, distance_m, pace_s=300):
    body = {"sport": "run", "start": (NOW - timedelta(hours=20)).isoformat(), "moving_s": distance_m * pace_s / 1000,
            "distance_m": distance_m, "has_gps": True, "split_paces_s_per_km": [pace_s] * (distance_m // 1000)}
    response = client.post("/api/v1/activities", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response


@pytest.fixture
def race(app, tenants, make_user):
    """Alpha's challenge: An ran 12.35 km, Ánh 5 km, Binh is registered with nothing counted, Chi is not in it."""
    people = {name: make_user(tenants["alpha"], f"{name}@alpha.example") for name in ("an", "anh", "binh", "chi")}
    people["admin"] = make_user(tenants["alpha"], "admin@alpha.example", roles=("participant", "admin"))
    _rename(tenants["alpha"], people["anh"], VIETNAMESE_NAME)
    headers = {name: _token(tenants["alpha"], user_id, ["read", "admin", "activities:write"] if name == "admin"
                            else ["read", "activities:write"]) for name, user_id in people.items()}
    client = app.test_client().on("alpha")
    assert _challenge(client, headers).status_code == 201
    for name in ("an", "anh", "binh"):
        registered = client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers[name])
        assert registered.status_code == 201, registered.json
    _run(client, headers["an"], 12350)
    _run(client, headers["anh"], 5000)
    run_queued_jobs(app)
    return client, headers


def pdf_text(pdf: bytes) -> str:
    """The text of an uncompressed reportlab PDF, one line per text object, decoding each embedded TrueType
    subset through its ToUnicode map (reportlab draws non-ASCII letters with subset codes)."""
    objects = {int(number): body for number, body in re.findall(rb"(\d+) 0 obj\n(.*?)\nendobj", pdf, re.S)}
    cmaps = {}
    for name, number in re.findall(rb"/(F\d+\+\d+) (\d+) 0 R", pdf):
        to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(number)])
        cmap = objects[int(to_unicode.group(1))]
        cmaps[name] = {int(code, 16): chr(int(char, 16))
                       for code, char in re.findall(rb"<([0-9A-F]{2})> <([0-9A-F]{4})>", cmap)}
    escapes = {b"n": "\n", b"r": "\r", b"t": "\t", b"b": "\b", b"f": "\f"}
    text, font = [], None
    for token in re.finditer(rb"/(\S+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj|\bET\b", pdf, re.S):
        if token.group(1):
            font = token.group(1)
        elif token.group(0) == b"ET":
            text.append("\n")
        else:
            for piece in re.finditer(rb"\\([0-7]{1,3})|\\(.)|(.)", token.group(2), re.S):
                if piece.group(2) is not None:
                    text.append(escapes.get(piece.group(2), piece.group(2).decode("latin-1")))
                    continue
                code = int(piece.group(1), 8) if piece.group(1) else piece.group(3)[0]
                text.append(cmaps[font].get(code, "?") if font in cmaps else chr(code))
    return "".join(text)


def _verify_url(pdf: bytes) -> str:
    links = re.findall(rb"/URI \((.*?)\)", pdf)
    assert len(links) == 1, links
    return links[0].decode()


def test_api_certificate_is_a_pdf_whose_qr_link_verifies_the_result(race, monkeypatch):
    client, headers = race
    response = client.get("/api/v1/challenges/run-2024/certificate", headers=headers["an"])
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF")
    assert response.headers["Content-Disposition"] == 'attachment; filename="certificate-run-2024-1.pdf"'
    assert b"An" not in re.findall(rb"\((.*?)\) Tj", response.data)  # compressed by default

    monkeypatch.setattr(certificates, "render_certificate", partial(certificates.render_certificate, compress=False))
    text = pdf_text(client.get("/api/v1/challenges/run-2024/certificate", headers=headers["an"]).data)
    for line in ("Alpha Corp", "Chạy vì trẻ em 2024", "Certificate of completion", "An", "bib 1",
                 "covered 12.35 km", "rank 1 of 3 participants"):
        assert line in text.splitlines(), (line, text)
    last_day = (NOW + timedelta(days=19)).astimezone(ZoneInfo("Asia/Ho_Chi_Minh")) - timedelta(microseconds=1)
    assert f"Last day of the challenge: {format_date(last_day.date(), 'long', locale='en')}" in text

    url = _verify_url(response.data)
    parts = urlsplit(url)
    assert parts.netloc == f"alpha.{BASE_DOMAIN}" and parts.path.startswith("/certificates/")
    page = client.get(parts.path)
    assert page.status_code == 200 and page.headers["X-Robots-Tag"] == "noindex"
    html = page.get_data(as_text=True)
    assert '<dd id="certificate-name">An</dd>' in html
    assert '<dd id="certificate-bib">1</dd>' in html
    assert '<dd id="certificate-km">12.35 km</dd>' in html
    assert '<dd id="certificate-rank">1 of 3 participants</dd>' in html
    assert "Chạy vì trẻ em 2024" in html and "Alpha Corp" in html


def test_vietnamese_names_are_drawn_with_a_font_that_has_their_letters(race, monkeypatch):
    client, headers = race
    monkeypatch.setattr(certificates, "render_certificate", partial(certificates.render_certificate, compress=False))
    response = client.get("/api/v1/challenges/run-2024/certificate", headers=headers["anh"])
    assert response.status_code == 200
    text = pdf_text(response.data)
    assert VIETNAMESE_NAME in text.splitlines() and "rank 2 of 3 participants" in text
    font = pdfmetrics.getFont(certificates.certificate_fonts()[1])
    assert certificates._covers_vietnamese(font), (
        f"{font.face.filename} lacks Vietnamese letters: install fonts-dejavu-core")
    page = client.get(urlsplit(_verify_url(response.data)).path).get_data(as_text=True)
    assert f'<dd id="certificate-name">{VIETNAMESE_NAME}</dd>' in page


def test_tampered_and_foreign_codes_answer_404(race, app):
    client, headers = race
    url = _verify_url(client.get("/api/v1/challenges/run-2024/certificate", headers=headers["an"]).data)
    path = urlsplit(url).path
    code = path.rsplit("/", 1)[1]
    payload, signature = code.split(".")
    tampered_payload = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (f"{tampered_payload}.{signature}", f"{payload}.{signature[:-2]}", "nonsense", f"{code}x"):
        page = client.get(f"/certificates/{bad}")
        assert page.status_code == 404, bad
        assert "This certificate code is not valid on this site" in page.get_data(as_text=True)
    # The same, well-signed code on another tenant's site.
    beta = app.test_client().on("beta")
    foreign = beta.get(path)
    assert foreign.status_code == 404
    assert vi_part("This certificate code is not valid on this site. Check that the whole address was copied, and "
                   "that it is the site of the organisation that issued the certificate.")[:40] in foreign.get_data(
        as_text=True)
    # Signed with the right key but naming another tenant: refused before any lookup.
    with app.test_request_context():
        forged = certificates._serializer().dumps({"t": 999999, "r": 1})
    assert client.get(f"/certificates/{forged}").status_code == 404
    # Not on the operator's bare domain either.
    assert app.test_client().on(None).get(path).status_code == 404


def test_no_certificate_without_counted_km_or_a_registration(race):
    client, headers = race
    nothing = client.get("/api/v1/challenges/run-2024/certificate", headers=headers["binh"])
    assert nothing.status_code == 409
    assert nothing.json["message"].startswith("certificate: You have no counted kilometres in this challenge yet")
    stranger = client.get("/api/v1/challenges/run-2024/certificate", headers=headers["chi"])
    assert stranger.status_code == 404
    assert client.get("/api/v1/challenges/nope/certificate", headers=headers["an"]).status_code == 404
    assert client.get("/api/v1/challenges/run-2024/certificate").status_code == 401


def test_signed_in_participant_downloads_from_the_site(race, app):
    client, _headers = race
    anonymous = app.test_client().on("alpha").get("/challenges/run-2024/certificate.pdf")
    assert anonymous.status_code == 302 and "/signin" in anonymous.headers["Location"]

    sign_in(client, "an@alpha.example")
    pdf = client.get("/challenges/run-2024/certificate.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Cache-Control"] == "private, no-store"
    assert client.get(urlsplit(_verify_url(pdf.data)).path).status_code == 200
    assert client.get("/challenges/nope/certificate.pdf").status_code == 404

    binh = app.test_client().on("alpha")
    sign_in(binh, "binh@alpha.example")
    none_yet = binh.get("/challenges/run-2024/certificate.pdf")
    assert none_yet.status_code == 409 and "no counted kilometres" in none_yet.get_data(as_text=True)
    chi = app.test_client().on("alpha")
    sign_in(chi, "chi@alpha.example")
    assert chi.get("/challenges/run-2024/certificate.pdf").status_code == 404


def test_vietnamese_site_formats_km_and_rank_for_its_locale(app, tenants, make_user):
    admin = make_user(tenants["beta"], "admin@beta.example", roles=("participant", "admin"))
    runner = make_user(tenants["beta"], "lan@beta.example")
    headers = {"admin": _token(tenants["beta"], admin, ["read", "admin", "activities:write"]),
               "lan": _token(tenants["beta"], runner, ["read", "activities:write"])}
    client = app.test_client().on("beta")
    assert _challenge(client, headers).status_code == 201
    client.post("/api/v1/challenges/run-2024/registrations", json={}, headers=headers["lan"])
    activity = _run(client, headers["lan"], 12350).json
    run_queued_jobs(app)
    pdf = client.get("/api/v1/challenges/run-2024/certificate", headers=headers["lan"])
    assert pdf.status_code == 200, client.get(f"/api/v1/activities/{activity['id']}", headers=headers["lan"]).json
    page = client.get(urlsplit(_verify_url(pdf.data)).path).get_data(as_text=True)
    assert "12,35 km" in page and "Công ty Beta" in page
