"""Security basics shared by every page: CSRF, rate limits, cookies and response headers."""

from flask import g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()


def _rate_limit_key():
    # Limits are per tenant and client address, so one tenant's traffic never throttles another's.
    tenant = getattr(g, "tenant", None)
    return f"{tenant.id if tenant else 'platform'}:{get_remote_address()}"


limiter = Limiter(key_func=_rate_limit_key, key_prefix="kindstride-ratelimit")

SIGN_IN_LIMIT = "10 per minute;50 per hour"
SIGN_UP_LIMIT = "5 per minute;30 per hour"
PASSWORD_RESET_LIMIT = "5 per minute;20 per hour"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Permissions-Policy", "geolocation=(), camera=(), microphone=()")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
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
        MAX_CONTENT_LENGTH=app.config.get("MAX_CONTENT_LENGTH", 64 * 1024 * 1024),
    )
    csrf.init_app(app)
    limiter.init_app(app)
    app.after_request(_security_headers)
