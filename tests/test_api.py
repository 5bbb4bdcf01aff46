"""The REST API: bearer tokens that are scoped, expiring, revocable, hashed and bound to one tenant."""

import hashlib
from datetime import timedelta

from kindstride.accounts import services
from kindstride.accounts.models import ApiToken, User
from kindstride.db import db, utcnow
from kindstride.tenancy.scope import tenant_scope


def _token(tenant_id, user_id, scopes=("read",), days=30):
    with tenant_scope(tenant_id):
        record, token = services.create_api_token(db.session.get(User, user_id), "cli", list(scopes), days)
        db.session.commit()
        return record.id, token


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_token_reads_me_and_is_stored_hashed(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "ann@example.com", roles=("participant", "admin"))
    token_id, token = _token(tenants["alpha"], user_id)
    me = app.test_client().on("alpha").get("/api/v1/me", headers=_bearer(token))
    assert me.status_code == 200
    assert me.json == {"id": user_id, "email": "ann@example.com", "name": "Ann", "roles": ["admin", "participant"]}
    with tenant_scope(tenants["alpha"]):
        stored = db.session.get(ApiToken, token_id)
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in stored.prefix


def test_missing_expired_revoked_and_unscoped_tokens_are_refused(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "ann@example.com")
    client = app.test_client().on("alpha")
    assert client.get("/api/v1/me").status_code == 401
    token_id, token = _token(tenants["alpha"], user_id, scopes=("activities:write",))
    refused = client.get("/api/v1/me", headers=_bearer(token))
    assert refused.status_code == 403 and "read" in refused.json["message"]
    token_id, token = _token(tenants["alpha"], user_id)
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=_bearer(token)).status_code == 200
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401
    token_id, token = _token(tenants["alpha"], user_id)
    with tenant_scope(tenants["alpha"]):
        db.session.get(ApiToken, token_id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401


def test_the_token_is_checked_before_the_body(app, tenants):
    # Without a token, a bad body is refused for the token, not described field by field.
    client = app.test_client().on("alpha")
    for path in ("/api/v1/activities", "/api/v1/challenges", "/api/v1/results/1/appeal"):
        refused = client.post(path, json={"sport": 42})
        assert refused.status_code == 401 and "Bearer" in refused.json["message"], path


def test_a_token_of_one_tenant_does_nothing_on_another(app, tenants, make_user):
    user_id = make_user(tenants["alpha"], "ann@example.com")
    _token_id, token = _token(tenants["alpha"], user_id)
    assert app.test_client().on("beta").get("/api/v1/me", headers=_bearer(token)).status_code == 401


def test_ids_of_another_tenant_answer_404_everywhere(app, tenants, make_user):
    from tests.conftest import sign_in

    alpha_admin = make_user(tenants["alpha"], "admin@alpha.example", roles=("participant", "admin"))
    beta_admin = make_user(tenants["beta"], "admin@beta.example", roles=("participant", "admin"))
    beta_token_id, _ = _token(tenants["beta"], beta_admin)
    _alpha_token_id, alpha_token = _token(tenants["alpha"], alpha_admin)
    client = app.test_client().on("alpha")
    sign_in(client, "admin@alpha.example")
    assert client.delete(f"/api/v1/tokens/{beta_token_id}", headers=_bearer(alpha_token)).status_code == 404
    assert client.submit(f"/account/tokens/{beta_token_id}/revoke", {}, form_path="/account").status_code == 404
    assert client.submit(f"/admin/members/{beta_admin}/roles", {"roles": ["admin"]},
                         form_path="/admin/members/").status_code == 404
    with tenant_scope(tenants["beta"]):
        assert db.session.get(ApiToken, beta_token_id).revoked_at is None


def test_token_form_errors_name_the_field(app, tenants, make_user):
    from tests.conftest import sign_in

    make_user(tenants["alpha"], "ann@example.com")
    client = app.test_client().on("alpha")
    sign_in(client, "ann@example.com")
    page = client.submit("/account/tokens", {"name": "x", "scopes": ["admin"], "days": "30"}, form_path="/account")
    assert page.status_code == 400 and "admin needs the admin role" in page.get_data(as_text=True)
    page = client.submit("/account/tokens", {"name": "x", "scopes": ["read"], "days": "9999"}, form_path="/account")
    assert page.status_code == 400 and "from 1 to 365" in page.get_data(as_text=True)
    page = client.submit("/account/tokens", {"name": "club tool", "scopes": ["read"], "days": "30"},
                         form_path="/account")
    assert page.status_code == 200 and 'id="new-token">ks_' in page.get_data(as_text=True)


def test_openapi_document_is_served_and_lists_the_endpoints(app, tenants):
    spec = app.test_client().on("alpha").get("/api/v1/openapi.json")
    assert spec.status_code == 200
    assert {"/api/v1/me", "/api/v1/tokens", "/api/v1/tokens/{token_id}", "/api/v1/tenant"} <= set(spec.json["paths"])
    assert spec.json["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_migrations_match_the_models(app):
    result = app.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
