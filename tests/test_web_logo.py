"""A tenant admin uploads the site's logo in the branding console: PNG, JPEG or WebP within the limits, shown
in every page's header at once and served re-encoded with a strict policy; SVG and anything else refused
with a message at the field; one tenant's logo is never another's."""

import io
import re

import pytest
from PIL import Image

from tests.conftest import sign_in
from tests.support.i18n import vi


def _image(kind, size=(300, 120), colour=(200, 40, 40)):
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, kind)
    return out.getvalue()


def _upload(client, data, filename, form_path="/admin/branding"):
    return client.submit("/admin/branding/logo", {"logo": (io.BytesIO(data), filename)}, form_path=form_path,
                         content_type="multipart/form-data")


def _text(response):
    return response.get_data(as_text=True)


def _field_errors(response):
    return re.findall(r'<p class="ks-error" id="e-logo">([^<]*)</p>', _text(response))


def _header_logo(html):
    found = re.search(r'<a class="ks-brand"[^>]*>\s*<img src="([^"]+)"', html)
    return found.group(1) if found else None


@pytest.fixture
def admins(app, tenants, make_user):
    clients = {}
    for slug in ("alpha", "beta"):
        make_user(tenants[slug], f"admin@{slug}.example", roles=("participant", "admin"))
        make_user(tenants[slug], f"runner@{slug}.example")
        clients[slug] = app.test_client().on(slug)
        sign_in(clients[slug], f"admin@{slug}.example")
    runner = app.test_client().on("alpha")
    sign_in(runner, "runner@alpha.example")
    return clients, runner


@pytest.mark.parametrize(("kind", "filename", "content_type"), [
    ("PNG", "logo.png", "image/png"), ("JPEG", "logo.jpeg", "image/jpeg"), ("WEBP", "Logo Final.WEBP", "image/webp"),
])
def test_an_uploaded_logo_shows_in_the_header_of_every_page(admins, app, kind, filename, content_type):
    clients, runner = admins
    admin = clients["alpha"]
    assert _header_logo(_text(admin.get("/"))) is None
    page = _text(admin.get("/admin/branding"))
    assert 'type="file"' in page and 'accept="image/png,image/jpeg,image/webp"' in page
    assert "This site has no logo yet." in page and "SVG is not accepted." in page

    uploaded = _upload(admin, _image(kind, size=(2400, 800)), filename)
    assert uploaded.status_code == 302
    branding = _text(admin.get("/admin/branding"))
    assert "The logo is saved. It shows at the top of every page." in branding
    address = _header_logo(branding)
    assert address and address.startswith("/theme/uploaded/")
    assert f'class="ks-logo-preview" src="{address}"' in branding
    for client, path in ((runner, "/activities"), (app.test_client().on("alpha"), "/")):
        assert _header_logo(_text(client.get(path))) == address  # every page, every visitor

    served = app.test_client().on("alpha").get(address)
    assert served.status_code == 200 and served.mimetype == content_type
    assert served.headers["Content-Security-Policy"] == "default-src 'none'"
    assert "immutable" in served.headers["Cache-Control"]
    image = Image.open(io.BytesIO(served.data))
    assert image.format == kind and image.size == (1024, 341)  # re-encoded, at most 1024 pixels wide
    # Another tenant's site does not have it.
    assert app.test_client().on("beta").get(address).status_code == 404
    assert _header_logo(_text(app.test_client().on("beta").get("/"))) is None


def test_svg_and_other_files_are_refused_at_the_field(admins, app):
    clients, runner = admins
    admin = clients["alpha"]
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for data, filename, message in (
        (svg, "logo.svg", "SVG logos are not accepted here (an SVG file can contain scripts). Upload a PNG, JPEG "
                          "or WebP image."),
        (svg, "logo.png", "SVG logos are not accepted here (an SVG file can contain scripts). Upload a PNG, JPEG "
                          "or WebP image."),  # named as a PNG, still an SVG
        (_image("GIF"), "logo.gif", "The logo must be a PNG, JPEG or WebP image; this file is not one."),
        (b"%PDF-1.4 not an image", "logo.png", "The logo must be a PNG, JPEG or WebP image; this file is not one."),
        (_image("PNG")[:60], "cut.png", "The logo must be a PNG, JPEG or WebP image; this file is not one."),
        (b"\x89PNG" + b"\0" * (1024 * 1024 + 10), "huge.png", "The logo file is too large: at most 1,024 KB."),
        (b"", "empty.png", "Choose an image file for the logo."),
    ):
        refused = _upload(admin, data, filename)
        assert refused.status_code == 400, filename
        assert _field_errors(refused) == [message], filename
        assert 'id="f-logo"' in _text(refused) and 'aria-describedby="e-logo"' in _text(refused)
    no_file = admin.submit("/admin/branding/logo", {}, form_path="/admin/branding")
    assert no_file.status_code == 400 and _field_errors(no_file) == ["Choose an image file for the logo."]
    assert _header_logo(_text(admin.get("/"))) is None  # nothing was kept

    # A pixel bomb: a tiny file that would decode to 100 million pixels.
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    refused = _upload(admin, bomb.getvalue(), "bomb.png")
    assert refused.status_code == 400
    assert _field_errors(refused) == ["The logo image is too big: at most 5000 by 5000 pixels."]

    # Only admins upload.
    assert _upload(runner, _image("PNG"), "logo.png", form_path="/activities").status_code == 403


def test_a_new_logo_replaces_the_old_one_and_can_be_removed(admins, app):
    clients, _runner = admins
    admin = clients["alpha"]
    _upload(admin, _image("PNG", colour=(0, 0, 0)), "one.png")
    first = _header_logo(_text(admin.get("/")))
    _upload(admin, _image("PNG", colour=(0, 120, 0)), "two.png")
    second = _header_logo(_text(admin.get("/")))
    assert first != second
    assert admin.get(first).status_code == 404  # the old address is gone, the new one works
    assert admin.get(second).status_code == 200
    removed = admin.submit("/admin/branding/logo", {"action": "remove"}, form_path="/admin/branding")
    assert removed.status_code == 302
    assert "The logo is removed." in _text(admin.get("/admin/branding"))
    assert _header_logo(_text(admin.get("/"))) is None and admin.get(second).status_code == 404


def test_the_logo_form_speaks_the_tenants_language(admins):
    clients, _runner = admins
    beta = clients["beta"]
    page = _text(beta.get("/admin/branding"))
    assert vi("Logo image") in page and vi("Upload the logo") in page
    refused = _upload(beta, b"<svg/>", "logo.svg")
    assert _field_errors(refused) == [vi(
        "SVG logos are not accepted here (an SVG file can contain scripts). Upload a PNG, JPEG or WebP image.")]
    assert _upload(beta, _image("PNG"), "logo.png").status_code == 302
    assert vi("The logo is saved. It shows at the top of every page.") in _text(beta.get("/admin/branding"))
