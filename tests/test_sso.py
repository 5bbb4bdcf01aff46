"""Single sign-on: a real authorization-code + PKCE flow against an identity provider on 127.0.0.1."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from kindstride.accounts.models import User
from kindstride.accounts.services import roles_of
from kindstride.db import db
from kindstride.tenancy.models import TenantSecret
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import SSO_SECRET, get_tenant, store_secret
from tests.support.oidc_provider import start_oidc_provider

CALLBACK = "http://alpha.kindstride.test/sso/callback"


@pytest.fixture
def provider(app, tenants):
    provider = start_oidc_provider(client_id="kindstride-alpha", client_secret="idp-secret-value")
    provider.add_redirect_uri(CALLBACK)
    tenant = get_tenant("alpha")
    tenant.settings = {**tenant.settings, "sso": {
        "issuer": provider.issuer, "client_id": "kindstride-alpha", "client_secret_env": "ALPHA_OIDC_SECRET",
        "allowed_email_domains": ["alpha.example"], "role_claim": "groups",
        "role_map": {"sport-office": "admin", "coaches": "moderator"}, "label": None,
    }}
    with tenant_scope(tenant.id):
        store_secret(SSO_SECRET, "idp-secret-value")
    db.session.commit()
    yield provider
    provider.stop()


def _sign_in_through_provider(client, tamper_state=False):
    start = client.get("/sso/start")
    assert start.status_code == 302
    authorize = urlsplit(start.headers["Location"])
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    # The browser's visit to the identity provider: a real HTTP request to it.
    back = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["Location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == CALLBACK
    path = f"{callback.path}?{callback.query}"
    if tamper_state:
        path = path.replace("state=", "state=x")
    return client.get(path)


def test_first_sign_in_creates_the_account_with_mapped_roles(app, provider, tenants):
    provider.set_user("minh@alpha.example", name="Minh Le", groups=["sport-office"])
    client = app.test_client().on("alpha")
    done = _sign_in_through_provider(client)
    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert "Minh Le" in client.get("/").get_data(as_text=True)
    with tenant_scope(tenants["alpha"]):
        user = db.session.scalar(sa.select(User).where(User.email == "minh@alpha.example"))
        assert user.password_hash is None and user.email_confirmed_at is not None
        assert roles_of(user) == {"participant", "admin"}

    # The provider is the authority on mapped roles: removed from the group, the role goes.
    provider.set_user("minh@alpha.example", name="Minh Le", groups=[])
    _sign_in_through_provider(app.test_client().on("alpha"))
    with tenant_scope(tenants["alpha"]):
        assert roles_of(db.session.get(User, user.id)) == {"participant"}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_a_foreign_email_domain_is_refused_with_a_clear_message(app, provider, tenants):
    provider.set_user("eve@gmail.example", name="Eve")
    refused = _sign_in_through_provider(app.test_client().on("alpha"))
    assert refused.status_code == 403
    assert "Accounts from gmail.example cannot sign in here" in refused.get_data(as_text=True)
    with tenant_scope(tenants["alpha"]):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_a_tampered_state_is_refused(app, provider, tenants):
    provider.set_user("minh@alpha.example", name="Minh Le")
    client = app.test_client().on("alpha")
    refused = _sign_in_through_provider(client, tamper_state=True)
    assert refused.status_code == 400 and "could not be verified" in refused.get_data(as_text=True)
    assert "Minh Le" not in client.get("/").get_data(as_text=True)


def test_the_client_secret_is_encrypted_at_rest(app, provider, tenants):
    with tenant_scope(tenants["alpha"]):
        stored = db.session.scalar(sa.select(TenantSecret.ciphertext).where(TenantSecret.name == SSO_SECRET))
    assert "idp-secret-value" not in stored and stored.startswith("gAAAA")


def test_a_tenant_without_sso_says_so(app):
    from kindstride.tenancy.services import create_tenant

    create_tenant("gamma", "Gamma Club", "en")
    page = app.test_client().on("gamma").get("/sso/start")
    assert page.status_code == 404 and "Single sign-on is not set up" in page.get_data(as_text=True)
