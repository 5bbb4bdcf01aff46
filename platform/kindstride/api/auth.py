"""Bearer API tokens: each request names a token of this tenant with the scope the endpoint needs."""

from functools import wraps

from flask import g, request
from flask_smorest import abort

from kindstride.accounts.services import PRIVILEGED_SCOPES, authenticate_api_token, roles_of
from kindstride.db import db

BEARER_SCHEME = {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token (ks_...)"}}
# For @blp.doc(**BEARER): marks an endpoint as token-authenticated in the OpenAPI document.
BEARER = {"security": [{"bearerAuth": []}]}


def token_required(scope):
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            kind, _sep, token = header.partition(" ")
            if kind.lower() != "bearer" or not token:
                abort(401, message="Authorization: send 'Bearer <API token>'")
            found = authenticate_api_token(token.strip())
            if found is None:
                abort(401, message="Authorization: the token is unknown, expired or revoked on this site")
            user, api_token = found
            if scope not in api_token.scopes:
                abort(403, message=f"Authorization: the token lacks the {scope!r} scope")
            roles = frozenset(roles_of(user))
            # A role taken away after the token was made takes its privileged scope with it.
            if scope in PRIVILEGED_SCOPES and not roles & PRIVILEGED_SCOPES[scope]:
                abort(403, message=f"Authorization: the {scope!r} scope needs a role this account no longer has")
            db.session.commit()  # records last_used_at
            g.user, g.api_token, g.roles = user, api_token, roles
            return view(*args, **kwargs)

        return wrapper

    return decorator
