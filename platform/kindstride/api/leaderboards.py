"""API: leaderboards (individuals by gender and age group, teams by division, members of a team),
the caller's rank, and challenge totals. Public: only counted kilometres and names are shown."""

import re

from flask import current_app, g
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from kindstride.api.auth import BEARER, token_required
from kindstride.api.common import challenge_or_404
from kindstride.challenges.services import registration_of
from kindstride.leaderboards import ranking
from kindstride.leaderboards import services as boards
from kindstride.security import exempt_from_rate_limits
from kindstride.tenancy.scope import require_tenant_id
from kindstride.web.sites import tenant_site_only

blp = Blueprint("api_leaderboards", __name__, url_prefix="/api/v1", description="Leaderboards and totals")
blp.before_request(tenant_site_only)
# Public reads served from Redis at the framework's pace: no rate limit applies to them (no default limits are
# configured), so the limiter's per-request bookkeeping is skipped.
exempt_from_rate_limits(blp)
CACHED_PAGES = 20  # the first pages of each board (unfiltered or by gender, age group, team) are kept in Redis


class BoardQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    gender = fields.String(load_default=None, validate=validate.OneOf(["female", "male", "other"]))
    age_group = fields.String(load_default=None, validate=validate.OneOf(list(boards.AGE_GROUPS)))
    q = fields.String(load_default=None, validate=validate.Length(max=100))
    team_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**63 - 1))


BOARD_QUERY = BoardQuery()  # an instance: webargs would build one from the class on every request


class TeamBoardQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    division_id = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**63 - 1))


class RowSchema(Schema):
    rank = fields.Integer()
    id = fields.Integer()
    name = fields.String()
    bib = fields.Integer(allow_none=True)
    score = fields.Integer()
    distance_m = fields.Integer()
    activities = fields.Integer(allow_none=True)
    team = fields.String(allow_none=True)


class TotalsSchema(Schema):
    participants = fields.Integer()
    distance_m = fields.Integer()
    score = fields.Integer()
    activities = fields.Integer()
    goal_m = fields.Integer(allow_none=True)


class MyRankSchema(Schema):
    rank = fields.Integer()
    bib = fields.Integer()
    score = fields.Integer()


@blp.route("/challenges/<slug>/leaderboard")
class IndividualBoard(MethodView):
    @blp.arguments(BOARD_QUERY, location="query")
    @blp.response(200, RowSchema(many=True))
    def get(self, query, slug):
        """Individuals, 50 a page; filter by gender, age group, team; search by name or bib."""
        tenant_id = require_tenant_id()
        variant = _variant(query)
        if variant is not None:
            body = ranking.cached_page(tenant_id, slug, variant)
            if body is not None:
                return current_app.response_class(body, mimetype=current_app.json.mimetype)
        challenge = challenge_or_404(slug)
        token = ranking.page_token(tenant_id, challenge.id) if variant is not None else None
        rows = boards.individual_board(challenge, query["page"], query["gender"], query["age_group"], query["q"],
                                       query["team_id"])
        if token is None:
            return rows
        response = current_app.json.response(RowSchema(many=True).dump(rows))
        ranking.store_page(tenant_id, challenge.id, slug, variant, token, response.get_data())
        return response


def _variant(query):
    """The cache key of a page without a search (searches are not kept), or None."""
    if query["q"] or query["page"] > CACHED_PAGES:
        return None
    return f"{query['page']}:{query['gender'] or ''}:{query['age_group'] or ''}:{query['team_id'] or ''}"


@blp.route("/challenges/<slug>/leaderboard/teams")
class TeamBoard(MethodView):
    @blp.arguments(TeamBoardQuery, location="query")
    @blp.response(200, RowSchema(many=True))
    def get(self, query, slug):
        """Teams, optionally of one division."""
        return boards.team_board(challenge_or_404(slug), query["division_id"], query["page"])


@blp.route("/challenges/<slug>/leaderboard/me")
class MyRank(MethodView):
    @blp.doc(**BEARER)
    @token_required("read")
    @blp.arguments(BOARD_QUERY, location="query")
    @blp.response(200, MyRankSchema)
    def get(self, query, slug):
        """The caller's rank (on the filtered board)."""
        tenant_id = require_tenant_id()
        unfiltered = not query["gender"] and not query["age_group"]
        if unfiltered:
            mine = ranking.cached_my_rank(tenant_id, slug, g.user.id)
            if mine is not None:
                return mine
        token = ranking.registrations_token(tenant_id) if unfiltered else None
        challenge = challenge_or_404(slug)
        registration = registration_of(challenge, g.user)
        if registration is None:
            abort(404, message="registration: you are not registered")
        rank = boards.rank_of(challenge, registration, query["gender"], query["age_group"])
        total = boards.participant_total(registration)
        ranking.remember_registration(tenant_id, slug, g.user.id, registration, token)
        return {"rank": rank, "bib": registration.bib, "score": total.score}


@blp.route("/challenges/<slug>/totals")
class Totals(MethodView):
    @blp.response(200, TotalsSchema)
    def get(self, slug):
        """Participants, counted kilometres, score and activities of the whole challenge."""
        challenge = challenge_or_404(slug)
        totals = boards.challenge_totals(challenge)
        return {**totals.__dict__, "goal_m": challenge.goal_m}


@blp.route("/challenges/<slug>/certificate")
class Certificate(MethodView):
    @blp.doc(**BEARER)
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="application/pdf",
                  description="The caller's finisher certificate (A4 PDF) with a QR code to its public check page")
    @blp.alt_response(404, description="No such challenge, or the caller is not registered in it")
    @blp.alt_response(409, description="The caller has no counted kilometres yet")
    @token_required("read")
    def get(self, slug):
        """The caller's certificate: name, counted km, rank and a QR code that verifies it."""
        from kindstride.challenges import certificates
        from kindstride.challenges.certificate_views import pdf_response, verify_url

        challenge = challenge_or_404(slug)
        registration = registration_of(challenge, g.user)
        if registration is None:
            abort(404, message="registration: you are not registered")
        try:
            certificate = certificates.issuable_certificate(registration)
        except certificates.NoCountedDistance as error:
            abort(409, message=f"certificate: {error}")
        return pdf_response(certificate, verify_url(registration))


# ------------------------------------------------------------------------------ the fast path for hot reads

_HOT_PATH = re.compile(r"^/api/v1/challenges/([a-z0-9][a-z0-9-]{0,62})/leaderboard(/me)?$")
_PAGE_QUERY = re.compile(r"^(?:page=([1-9][0-9]?))?$")


class HotReads:
    """WSGI middleware for the two hottest reads, the first pages of a board and "my rank": when everything
    the answer needs is already in this process's caches (the site's tenant, active; the caller's token) and in
    Redis (the stored page; the caller's registration and the sorted set), it is answered here, byte for byte
    as the views below answer it, with the same headers, without Flask's per-request machinery. Anything else
    (another query, a cache miss, an unknown or suspended site, a token the cache cannot vouch for) goes to the
    Flask app unchanged, which fills the caches."""

    def __init__(self, app, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET":
            match = _HOT_PATH.match(environ.get("PATH_INFO") or "")
            if match is not None:
                answer = self._answer(environ, match.group(1), bool(match.group(2)))
                if answer is not None:
                    return self._respond(environ, start_response, *answer)
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ, slug, mine):
        from kindstride.api.auth import cached_caller
        from kindstride.tenancy.models import ACTIVE
        from kindstride.tenancy.resolution import cached_tenant

        query = _PAGE_QUERY.match(environ.get("QUERY_STRING") or "")
        if query is None or (mine and query.group(1)):
            return None
        tenant = cached_tenant(environ.get("HTTP_HOST") or "", self.app.config["BASE_DOMAIN"])
        if tenant is None or tenant["status"] != ACTIVE:
            return None
        with self.app.app_context():
            if not mine:
                page = int(query.group(1) or 1)
                if page > CACHED_PAGES:
                    return None
                body = ranking.cached_page(tenant.id, slug, f"{page}:::")
                return None if body is None else (tenant, "api_leaderboards.IndividualBoard", body)
            kind, _sep, token = (environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                return None
            caller = cached_caller(tenant.id, token.strip(), "read")
            if caller is None:
                return None
            user_id, generation = caller
            answer = ranking.cached_my_rank(tenant.id, slug, user_id, still=generation)
            if answer is None:
                return None
            return tenant, "api_leaderboards.MyRank", self._json(answer)

    def _json(self, data):
        provider = self.app.json
        if (provider.compact is None and self.app.debug) or provider.compact is False:
            return f"{provider.dumps(data, indent=2)}\n".encode()
        return f"{provider.dumps(data, separators=(',', ':'))}\n".encode()

    def _respond(self, environ, start_response, tenant, endpoint, body):
        from kindstride.ops.health import ENDPOINT_KEY, TENANT_KEY
        from kindstride.ops.logging import tenant_slug_var
        from kindstride.security import security_headers

        environ[ENDPOINT_KEY], environ[TENANT_KEY] = endpoint, tenant["slug"]
        tenant_slug_var.set(tenant["slug"])
        # As Flask sends the view's answer (it looks at the session: Vary: Cookie).
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   *security_headers(environ.get("wsgi.url_scheme") == "https"), ("Vary", "Cookie")]
        start_response("200 OK", headers)
        return [body]


@blp.record_once
def _install_hot_reads(state):
    state.app.wsgi_app = HotReads(state.app, state.app.wsgi_app)
