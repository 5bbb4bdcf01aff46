import re

import sqlalchemy as sa

from kindstride.accounts.models import User
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.conftest import sign_in
from tests.support.jobs import run_queued_jobs


def _link(mailbox, index, path_part):
    message = mailbox.wait_for(index + 1)[index]
    return next(link for link in mailbox.links(message) if path_part in link), message


def test_sign_up_confirm_sign_in_and_out(app, tenants, mailbox):
    client = app.test_client().on("alpha")
    page = client.submit("/signup", {"name": "Lan Nguyen", "email": "Lan@Example.com", "password": "a long password"})
    assert page.status_code == 200 and "Check your email" in page.get_data(as_text=True)
    # Unconfirmed: sign-in is refused with a way to get the link again.
    refused = client.submit("/signin", {"email": "lan@example.com", "password": "a long password"})
    assert refused.status_code == 400 and "confirm your email" in refused.get_data(as_text=True)

    run_queued_jobs(app)
    link, message = _link(mailbox, 0, "/confirm/")
    assert message["To"] == "lan@example.com" and "Alpha Corp" in message["Subject"]
    path = link.split("alpha.kindstride.test", 1)[1]
    assert client.get(path).status_code == 200  # a GET does not spend the token
    confirmed = client.submit(path, {})
    assert confirmed.status_code == 302
    assert "Lan Nguyen" in client.get("/").get_data(as_text=True)
    assert client.submit(path, {}).status_code == 400  # single use

    client.submit("/signout", {}, form_path="/")
    assert "Sign in" in client.get("/").get_data(as_text=True)
    assert sign_in(client, "lan@example.com", "a long password").headers["Location"] == "/"


def test_sign_up_errors_name_the_field_and_store_nothing(app, tenants, make_user):
    make_user(tenants["alpha"], "taken@example.com")
    client = app.test_client().on("alpha")
    short = client.submit("/signup", {"name": "A", "email": "a@example.com", "password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.get_data(as_text=True)
    bad_email = client.submit("/signup", {"name": "A", "email": "not-an-email", "password": "a long password"})
    assert "not a valid email address" in bad_email.get_data(as_text=True)
    taken = client.submit("/signup", {"name": "A", "email": "taken@example.com", "password": "a long password"})
    assert "already has an account" in taken.get_data(as_text=True)
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_password_reset_is_single_use_and_ends_old_sessions(app, tenants, make_user, mailbox):
    make_user(tenants["alpha"], "ann@example.com")
    old_session = app.test_client().on("alpha")
    sign_in(old_session, "ann@example.com")
    client = app.test_client().on("alpha")
    answer = client.submit("/password/forgot", {"email": "ann@example.com"})
    unknown = client.submit("/password/forgot", {"email": "nobody@example.com"})
    # The same answer for an unknown address: no probing for who has an account.
    assert answer.status_code == unknown.status_code == 200
    run_queued_jobs(app)
    link, _ = _link(mailbox, 0, "/password/reset/")
    assert len(mailbox.messages) == 1
    path = link.split("alpha.kindstride.test", 1)[1]
    done = client.submit(path, {"password": "a brand new password"})
    assert done.status_code == 302
    assert client.submit(path, {"password": "another new password"}).status_code == 400
    sign_in(app.test_client().on("alpha"), "ann@example.com", "a brand new password")
    assert "Sign in" in old_session.get("/").get_data(as_text=True)


def test_forms_without_csrf_token_are_refused(app, tenants):
    response = app.test_client().on("alpha").post("/signup", data={"name": "A", "email": "a@example.com",
                                                                      "password": "a long password"})
    assert response.status_code == 400


def test_sign_in_is_rate_limited_per_client(app, tenants, make_user):
    make_user(tenants["alpha"], "ann@example.com")
    client = app.test_client().on("alpha")
    token = client.csrf_token("/signin")
    codes = [client.post("/signin", data={"csrf_token": token, "email": "ann@example.com", "password": "wrong"})
             .status_code for _ in range(11)]
    assert codes[:10] == [400] * 10 and codes[10] == 429
    # Another tenant's site is not throttled by this one.
    assert app.test_client().on("beta").get("/signin").status_code == 200


def test_pages_carry_security_headers_and_a_secure_cookie_setup(app, tenants):
    response = app.test_client().on("alpha").get("/signin")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Domain" not in cookie


def test_session_of_one_tenant_does_not_sign_in_on_another(app, tenants, make_user):
    make_user(tenants["alpha"], "ann@example.com")
    client = app.test_client().on("alpha")
    sign_in(client, "ann@example.com")
    cookie = client.get_cookie("kindstride_session", domain="alpha.kindstride.test")
    other = app.test_client().on("beta")
    other.set_cookie("kindstride_session", cookie.value, domain="beta.kindstride.test")
    assert "Ann" not in other.get("/").get_data(as_text=True)


def test_passwords_are_stored_as_argon2id(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "ann@example.com")
    with tenant_scope(tenants["alpha"]):
        assert re.match(r"^\$argon2id\$", db.session.get(User, user_id).password_hash)


def test_operator_creates_suspends_and_reactivates_a_tenant(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["operators", "create", "op@example.com", "--password", "operator password"]
                         ).exit_code == 0
    client = app.test_client().on(None)
    assert client.get("/").headers["Location"] == "/operator/"
    assert client.get("/operator/").headers["Location"] == "/operator/signin"
    signed_in = client.submit("/operator/signin", {"email": "op@example.com", "password": "operator password"})
    assert signed_in.status_code == 302
    created = client.submit("/operator/tenants", {"slug": "delta", "name": "Delta Run Club", "locale": "vi",
                                         "currency": "VND", "timezone": "Asia/Ho_Chi_Minh"}, form_path="/operator/")
    assert created.status_code == 302
    assert "Delta Run Club" in client.get("/operator/").get_data(as_text=True)
    bad = client.submit("/operator/tenants", {"slug": "delta", "name": "Again"}, form_path="/operator/")
    assert bad.status_code == 400 and "already exists" in bad.get_data(as_text=True)
    client.submit("/operator/tenants/delta/suspend", {}, form_path="/operator/")
    assert app.test_client().on("delta").get("/").status_code == 503
    client.submit("/operator/tenants/delta/activate", {}, form_path="/operator/")
    assert app.test_client().on("delta").get("/").status_code == 200
    # Operator pages do not exist on tenant sites, nor tenant pages on the operator site.
    assert app.test_client().on("delta").get("/operator/").status_code == 404
    assert app.test_client().on(None).get("/signin").status_code == 404
