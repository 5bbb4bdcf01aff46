"""A real OpenID Connect provider on 127.0.0.1 for tests, built on Authlib's server side.

It speaks HTTP on a random free port from a daemon thread, so the app under test talks to it
exactly as it would to a real identity provider: discovery, JWKS, authorization code flow with
PKCE (S256, required), RS256-signed ID tokens and a userinfo endpoint.

Deliberate simplifications for tests:
- There is no login form: the person set with `OIDCProvider.set_user` is approved at once. With
  nobody set, /authorize redirects back with ``error=access_denied``.
- One confidential client (client_secret_basic or client_secret_post at /token).
- Redirect URIs are matched exactly against those given to `add_redirect_uri`, like a real IdP,
  so a test catches the app sending the wrong callback (host, port or path).
- Everything lives in memory and dies with `stop()`.

    provider = start_oidc_provider()
    provider.add_redirect_uri("http://acme.kindstride.test:5000/auth/oidc/callback")
    provider.set_user("ada@example.org", name="Ada", groups=["staff"])
    ...
    provider.stop()
"""

import hmac
import threading
import time
import uuid
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, UserInfo, UserInfoEndpoint
from flask import Flask, jsonify
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

SCOPES = ["openid", "email", "profile"]
ID_TOKEN_ALG = "RS256"
TOKEN_LIFETIME = 3600


@dataclass(frozen=True)
class _User:
    sub: str
    email: str
    name: str
    groups: tuple[str, ...]


def _claims(user: _User, scope: str) -> UserInfo:
    """The claims for both the ID token and /userinfo.

    email/email_verified need the "email" scope and name needs "profile", like a real IdP, so a
    client that forgets to ask for them finds out; groups are always sent, as most IdPs are set up to.
    """
    scopes = set(scope.split())
    claims = UserInfo(sub=user.sub, groups=list(user.groups))
    if "email" in scopes:
        claims.update(email=user.email, email_verified=True)
    if "profile" in scopes:
        claims["name"] = user.name
    return claims


class _Client(ClientMixin):
    def __init__(self, client_id: str, client_secret: str, redirect_uris: set[str]):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = redirect_uris  # shared with the provider, so add_redirect_uri applies at once
        self.client_metadata = {}  # UserInfoEndpoint looks here for signed-userinfo settings

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None  # make redirect_uri mandatory, as OIDC does

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"  # no refresh tokens: tests log in afresh


@dataclass
class _AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: _User
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time


@dataclass
class _Token(TokenMixin):
    access_token: str
    scope: str
    expires_in: int
    client: _Client
    user: _User
    issued_at: int = field(default_factory=lambda: int(time.time()))

    def check_client(self, client):
        return client.get_client_id() == self.client.get_client_id()

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        return False

    def get_user(self):
        return self.user

    def get_client(self):
        return self.client


class _RequiredS256(CodeChallenge):
    """PKCE that cannot be skipped.

    Authlib's CodeChallenge(required=True) only insists on PKCE for public clients; a confidential
    client may still omit code_challenge. The app must always send it, so refuse any authorization
    request without an S256 challenge (the token side then always demands the matching verifier).
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE 'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class OIDCProvider:
    """A running provider; build it with `start_oidc_provider`."""

    def __init__(self, client_id: str, client_secret: str):
        self.client_id = client_id
        self.client_secret = client_secret
        self._lock = threading.Lock()
        self._user: _User | None = None
        self._redirect_uris: set[str] = set()
        self._client = _Client(client_id, client_secret, self._redirect_uris)
        self._codes: dict[str, _AuthorizationCode] = {}
        self._tokens: dict[str, _Token] = {}
        self._used_nonces: set[str] = set()
        self._key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ID_TOKEN_ALG}, auto_kid=True)

        # Bind before serving: the socket listens from here on, so requests never race the thread.
        self._server = make_server("127.0.0.1", 0, self._create_app(), threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        # A short poll interval only bounds how long stop() waits for the loop to notice shutdown.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="oidc-provider", daemon=True)
        self._thread.start()

    # -- public interface -------------------------------------------------------------------

    def set_user(self, email: str, *, name: str = "Test User", groups: list[str] | None = None,
                 sub: str | None = None) -> None:
        """The person who will 'log in' at the next authorization request (auto-approved; no login form).

        Without `sub`, it is derived from the email, so the same person keeps the same subject.
        """
        user = _User(sub=sub or str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email.lower()}")),
                     email=email, name=name, groups=tuple(groups or ()))
        with self._lock:
            self._user = user

    def add_redirect_uri(self, uri: str) -> None:
        """Allow `uri` (exact match) as a redirect_uri for the client."""
        with self._lock:
            self._redirect_uris.add(uri)

    def stop(self) -> None:
        """Shut the HTTP server down and wait for its thread; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # -- Authlib wiring ---------------------------------------------------------------------

    def _create_app(self) -> Flask:
        provider = self
        app = Flask(__name__)
        app.config.update(OAUTH2_SCOPES_SUPPORTED=SCOPES,
                          OAUTH2_TOKEN_EXPIRES_IN={"authorization_code": TOKEN_LIFETIME})

        class CodeGrant(grants.AuthorizationCodeGrant):
            def save_authorization_code(self, code, request):
                data = request.payload.data
                item = _AuthorizationCode(
                    code=code, client_id=request.client.get_client_id(), redirect_uri=request.payload.redirect_uri,
                    scope=request.scope, user=request.user, nonce=data.get("nonce"),
                    code_challenge=data["code_challenge"], code_challenge_method=data["code_challenge_method"])
                with provider._lock:
                    provider._codes[code] = item
                    if item.nonce:
                        provider._used_nonces.add(item.nonce)

            def query_authorization_code(self, code, client):
                with provider._lock:
                    item = provider._codes.get(code)
                if item and item.client_id == client.get_client_id():
                    return item
                return None

            def delete_authorization_code(self, authorization_code):
                with provider._lock:
                    provider._codes.pop(authorization_code.code, None)  # single use

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class OpenIDExtension(OpenIDCode):
            def exists_nonce(self, nonce, request):
                with provider._lock:
                    return nonce in provider._used_nonces  # a replayed nonce is refused

            def resolve_client_private_key(self, client):
                return provider._key

            def get_client_algorithm(self, client):
                return ID_TOKEN_ALG

            def get_encode_header(self, client):
                return {"alg": ID_TOKEN_ALG, "kid": provider._key.kid}  # lets clients pick the key from /jwks

            def get_client_claims(self, client):
                return {"iss": provider.issuer, "aud": client.get_client_id()}

            def generate_user_info(self, user, scope):
                return _claims(user, scope)

        class TokenValidator(BearerTokenValidator):
            def authenticate_token(self, token_string):
                with provider._lock:
                    return provider._tokens.get(token_string)

        class UserInfoFromToken(UserInfoEndpoint):
            def get_issuer(self):
                return provider.issuer

            def generate_user_info(self, user, scope):
                return _claims(user, scope)

        def query_client(client_id):
            return provider._client if client_id == provider.client_id else None

        def save_token(token, request):
            item = _Token(access_token=token["access_token"], scope=token["scope"],
                          expires_in=token["expires_in"], client=request.client, user=request.user)
            with provider._lock:
                provider._tokens[item.access_token] = item

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
        server.register_grant(CodeGrant, [_RequiredS256(required=True), OpenIDExtension(require_nonce=False)])
        protector = ResourceProtector()
        protector.register_token_validator(TokenValidator())
        server.register_endpoint(UserInfoFromToken(resource_protector=protector))

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(
                issuer=provider.issuer,
                authorization_endpoint=f"{provider.issuer}/authorize",
                token_endpoint=f"{provider.issuer}/token",
                userinfo_endpoint=f"{provider.issuer}/userinfo",
                jwks_uri=f"{provider.issuer}/jwks",
                scopes_supported=SCOPES,
                response_types_supported=["code"],
                grant_types_supported=["authorization_code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=[ID_TOKEN_ALG],
                code_challenge_methods_supported=["S256"],
                token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
                claims_supported=["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
                                  "email", "email_verified", "name", "groups"],
            )

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([provider._key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            with provider._lock:
                user = provider._user
            try:
                grant = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                # Authlib attaches the redirect_uri to an error only once it has checked it: bad client or
                # redirect_uri errors become a 400 here, the rest go back to the client as ?error=...
                return server.handle_error_response(None, error)
            return server.create_authorization_response(grant=grant, grant_user=user)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo():
            return server.create_endpoint_response("userinfo")

        return app


def start_oidc_provider(client_id: str = "kindstride", client_secret: str = "s3cret") -> OIDCProvider:
    """Start a provider serving on 127.0.0.1 at a free port; call `stop()` when done."""
    return OIDCProvider(client_id, client_secret)
