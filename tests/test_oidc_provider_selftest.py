"""The test OpenID Connect provider works on its own, driven by a real OAuth client over HTTP."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.oidc_provider import start_oidc_provider

REDIRECT_URI = "http://acme.kindstride.test/auth/oidc/callback"


@pytest.fixture
def provider():
    provider = start_oidc_provider()
    provider.add_redirect_uri(REDIRECT_URI)
    provider.set_user("ada@example.org", name="Ada Lovelace", groups=["staff", "admins"])
    yield provider
    provider.stop()


@pytest.fixture
def metadata(provider):
    response = requests.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=5)
    response.raise_for_status()
    return response.json()


def _client(provider, **kwargs):
    return OAuth2Session(provider.client_id, provider.client_secret, scope="openid email profile",
                         redirect_uri=REDIRECT_URI, code_challenge_method="S256", **kwargs)


def _authorize(url):
    """Follow /authorize as a browser would, stopping at the redirect back to the app."""
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_discovery_document(provider, metadata):
    assert metadata["issuer"] == provider.issuer
    assert metadata["authorization_endpoint"] == f"{provider.issuer}/authorize"
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(metadata["token_endpoint_auth_methods_supported"])


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authorization_code_flow_with_pkce(provider, metadata, auth_method):
    client = _client(provider, token_endpoint_auth_method=auth_method)
    verifier, nonce = generate_token(64), generate_token(20)
    url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                 nonce=nonce)
    assert "code_challenge=" in url

    location, params = _authorize(url)
    assert params["state"] == state and params["code"]

    token = client.fetch_token(metadata["token_endpoint"], authorization_response=location, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer"

    keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=5).json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.header["alg"] == "RS256"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": provider.client_id},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(id_token.claims)
    claims = id_token.claims
    assert claims["email"] == "ada@example.org" and claims["email_verified"] is True
    assert claims["name"] == "Ada Lovelace"
    assert claims["groups"] == ["staff", "admins"]

    userinfo = client.get(metadata["userinfo_endpoint"], timeout=5).json()
    assert userinfo["sub"] == claims["sub"] and userinfo["email"] == "ada@example.org"

    # The code is single use.
    again = _client(provider, token_endpoint_auth_method=auth_method)
    with pytest.raises(OAuthError) as refused:
        again.fetch_token(metadata["token_endpoint"], authorization_response=location, code_verifier=verifier)
    assert refused.value.error == "invalid_grant"


def test_authorization_without_code_challenge_is_refused(provider, metadata):
    client = _client(provider)
    url, _ = client.create_authorization_url(metadata["authorization_endpoint"], nonce=generate_token(20))
    assert "code_challenge" not in url

    _, params = _authorize(url)
    assert "code" not in params
    assert params["error"] == "invalid_request"


def test_plain_code_challenge_is_refused(provider, metadata):
    client = _client(provider)
    verifier = generate_token(64)
    url, _ = client.create_authorization_url(metadata["authorization_endpoint"], code_challenge=verifier,
                                             code_challenge_method="plain")
    _, params = _authorize(url)
    assert "code" not in params
    assert params["error"] == "invalid_request"


def test_wrong_code_verifier_is_refused(provider, metadata):
    client = _client(provider)
    url, _ = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=generate_token(64))
    location, _ = _authorize(url)

    with pytest.raises(OAuthError) as refused:
        client.fetch_token(metadata["token_endpoint"], authorization_response=location,
                           code_verifier=generate_token(64))
    assert refused.value.error == "invalid_grant"

    # Raw request too, so the refusal is visible at the HTTP level, not just in the client library.
    _, params = _authorize(client.create_authorization_url(metadata["authorization_endpoint"],
                                                           code_verifier=generate_token(64))[0])
    response = requests.post(metadata["token_endpoint"], auth=(provider.client_id, provider.client_secret), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"  # verifier missing altogether


def test_unregistered_redirect_uri_is_not_followed(provider, metadata):
    client = _client(provider)
    url, _ = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=generate_token(64),
                                             redirect_uri="http://evil.example/callback")
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_stop_shuts_the_server_down():
    provider = start_oidc_provider()
    url = f"{provider.issuer}/jwks"
    assert requests.get(url, timeout=5).ok
    provider.stop()
    provider.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)

