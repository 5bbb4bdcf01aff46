"""Security basics shared by every page: CSRF, rate limits, cookies, response headers and unstorable input."""

import re

from flask import g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from kindstride.ops.logging import redact_url

csrf = CSRFProtect()


def _rate_limit_key():
    # Limits are per tenant and client address, so one tenant's traffic never throttles another's.
    tenant = getattr(g, "tenant", None)
    return f"{tenant.id if tenant else 'platform'}:{get_remote_address()}"


limiter = Limiter(key_func=_rate_limit_key, key_prefix="kindstride-ratelimit")
_UNLIMITED_BLUEPRINTS = set()


def exempt_from_rate_limits(blueprint):
    """No rate limit applies to this blueprint's views. Unlike limiter.exempt, the limiter then skips them before
    it resolves any limits: that resolution alone was a few percent of an API request's CPU."""
    _UNLIMITED_BLUEPRINTS.add(blueprint.name)


@limiter.request_filter
def _in_unlimited_blueprint():
    return request.blueprint in _UNLIMITED_BLUEPRINTS


SIGN_IN_LIMIT = "10 per minute;50 per hour"
SIGN_UP_LIMIT = "5 per minute;30 per hour"
PASSWORD_RESET_LIMIT = "5 per minute;20 per hour"

CSP_DIRECTIVES = (
    ("default-src", ("'self'",)), ("img-src", ("'self'", "data:")), ("style-src", ("'self'",)),
    ("script-src", ("'self'",)), ("object-src", ("'none'",)), ("base-uri", ("'self'",)),
    ("frame-ancestors", ("'none'",)), ("form-action", ("'self'",)),
)


def content_security_policy(**extra):
    """The site's policy, with more sources for some directives (keyword: the directive with "_" for "-",
    value: a list of sources). A directive not in the default policy is added (e.g. frame_src)."""
    extra = {name.replace("_", "-"): list(sources) for name, sources in extra.items()}
    parts = []
    for directive, sources in CSP_DIRECTIVES:
        added = [source for source in extra.pop(directive, []) if source not in sources]
        parts.append(" ".join((directive, *sources, *added)))
    for directive, sources in extra.items():
        parts.append(" ".join((directive, "'self'", *dict.fromkeys(sources))))
    return "; ".join(parts)


CONTENT_SECURITY_POLICY = content_security_policy()


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers every response carries (a view may set its own stricter ones first); the one list that both
    Flask's responses and the leaderboard's pre-Flask fast path (kindstride.api.leaderboards.HotReads) use."""
    headers = [("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("X-Content-Type-Options", "nosniff"),
               ("X-Frame-Options", "DENY"), ("Referrer-Policy", "strict-origin-when-cross-origin"),
               ("Permissions-Policy", "geolocation=(), camera=(), microphone=()")]
    if secure:
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


def _security_headers(response):
    for name, value in security_headers(request.is_secure):
        response.headers.setdefault(name, value)
    return response


def init_security(app):
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["PRODUCTION"],
        SESSION_COOKIE_NAME="kindstride_session",
        PERMANENT_SESSION_LIFETIME=14 * 24 * 3600,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        RATELIMIT_STORAGE_URI=app.config["REDIS_URL"] or "memory://",
        RATELIMIT_HEADERS_ENABLED=True,
        # Each attempt counts for a full window: a fixed window would allow twice the limit across its boundary.
        RATELIMIT_STRATEGY="moving-window",
        # Redis unreachable: limits are counted in this process's memory until it is back, rather than every
        # rate-limited page (sign-in, sign-up, password reset) failing with a 500.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        # Flask's own default is None (no limit at all), so `config.get(key, default)` would never apply it.
        MAX_CONTENT_LENGTH=app.config.get("MAX_CONTENT_LENGTH") or MAX_REQUEST_BYTES,
    )
    csrf.init_app(app)
    limiter.init_app(app)
    app.before_request(refuse_unstorable_text)
    app.after_request(_security_headers)


MAX_REQUEST_BYTES = 64 * 1024 * 1024
# Text no database column can hold: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (not encodable as
# UTF-8; JSON can carry them as "\ud800"). Anything else, control characters included, is stored as typed and
# escaped where it is shown.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnstorableText(ValueError):
    def __init__(self, field, problem):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _strings(value, path):
    """(path, string) of every string in a parsed JSON body, keys included, without recursion."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, inner in item.items():
                yield where, str(key)
                stack.append((f"{where}.{key}" if where else str(key), inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", inner) for index, inner in enumerate(item))


def _check_text(fields):
    for name, text in fields:
        found = UNSTORABLE.search(text)
        if found:
            code = f"U+{ord(found.group()):04X}"
            raise UnstorableText(name or "body", f"contains a character that cannot be stored ({code})")


def refuse_unstorable_text():
    """before_request: a NUL or a lone surrogate anywhere in the query, the form, file names or a JSON body is
    refused with a 4xx naming the field, before any view could hand it to the database (which would fail the
    request with a 500). A JSON body nested too deeply to parse is refused the same way."""
    from flask import current_app, render_template

    view = current_app.view_functions.get(request.endpoint)
    # Gateways' and Strava's callbacks (the CSRF-exempt views) verify their raw body themselves: it is not parsed
    # here, so that it is still there, byte for byte, when they read it.
    raw_body = view is not None and f"{view.__module__}.{view.__name__}" in csrf._exempt_views
    try:
        _check_text(request.args.items(multi=True))
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and not raw_body:
            if request.is_json:  # a JSON body is all there is: no form, no files
                try:
                    body = request.get_json(silent=True)
                except RecursionError:
                    raise UnstorableText("body", "the JSON is nested too deeply") from None
                _check_text(_strings(body, ""))
            else:
                _check_text(request.form.items(multi=True))
                _check_text((name, upload.filename or "") for name, upload in request.files.items(multi=True))
    except UnstorableText as error:
        current_app.logger.info("refused %s %s: %s", request.method, redact_url(request.path), error)
        if request.path.startswith("/api/"):
            return {"code": 422, "status": "Unprocessable Entity", "message": str(error),
                    "errors": {"fields": [str(error)]}}, 422
        return render_template("errors/bad_input.html", field=error.field, problem=error.problem), 400
    return None
