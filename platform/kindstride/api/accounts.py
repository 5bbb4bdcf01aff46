"""API: the tenant's public profile, the caller's account and its API tokens."""

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields

from kindstride.accounts import services
from kindstride.api.auth import BEARER, token_required
from kindstride.db import db
from kindstride.web.sites import tenant_site_only

blp = Blueprint("api_accounts", __name__, url_prefix="/api/v1", description="Tenant and account")
blp.before_request(tenant_site_only)


class TenantSchema(Schema):
    slug = fields.String()
    name = fields.String()
    locale = fields.String()
    currency = fields.String()
    timezone = fields.String()


class MeSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    roles = fields.List(fields.String())


class ApiTokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    scopes = fields.List(fields.String())
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)


@blp.route("/tenant")
class TenantResource(MethodView):
    @blp.response(200, TenantSchema)
    def get(self):
        """This site's tenant."""
        return g.tenant


@blp.route("/me")
class MeResource(MethodView):
    @blp.doc(**BEARER)
    @token_required("read")
    @blp.response(200, MeSchema)
    def get(self):
        """The account the token belongs to."""
        return {"id": g.user.id, "email": g.user.email, "name": g.user.name, "roles": sorted(g.roles)}


@blp.route("/tokens")
class TokensResource(MethodView):
    @blp.doc(**BEARER)
    @token_required("read")
    @blp.response(200, ApiTokenSchema(many=True))
    def get(self):
        """The caller's API tokens (never their secret values)."""
        return services.api_tokens_of(g.user)


@blp.route("/tokens/<int:token_id>")
class TokenResource(MethodView):
    @blp.doc(**BEARER)
    @token_required("read")
    @blp.response(200, ApiTokenSchema)
    def delete(self, token_id):
        """Revoke one of the caller's tokens."""
        try:
            token = services.revoke_api_token(g.user, token_id)
        except services.AccountError:
            abort(404, message="token_id: no such token")
        db.session.commit()
        return token
