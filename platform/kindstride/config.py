"""Configuration from environment variables, with embedded defaults for the demo.

Every variable is named here once; `ENV_VARIABLES` is the list the operations guide documents.
"""

import os
import secrets
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# name -> (config key, default, help). A default of None means "unset".
ENV_VARIABLES = {
    "KINDSTRIDE_ENV": ("ENV", "development", "development or production; production refuses unsafe defaults"),
    "KINDSTRIDE_SECRET_KEY": ("SECRET_KEY", None, "signs sessions and CSRF tokens; required in production"),
    "KINDSTRIDE_SECRETS_KEY": (
        "SECRETS_KEY", None,
        "Fernet key(s), comma-separated, newest first, encrypting tenant secrets at rest; required in production",
    ),
    "KINDSTRIDE_DATABASE_URL": ("DATABASE_URL", None, "SQLAlchemy URL the app connects with (the app role)"),
    "KINDSTRIDE_MIGRATE_DATABASE_URL": (
        "MIGRATE_DATABASE_URL", None, "URL migrations run with (the owner role); defaults to DATABASE_URL",
    ),
    "KINDSTRIDE_DB_APP_ROLE": ("DB_APP_ROLE", "kindstride_app", "PostgreSQL role the migrations grant access to"),
    "KINDSTRIDE_REDIS_URL": ("REDIS_URL", None, "Redis for jobs, rate limits and caches; unset runs jobs in-process"),
    "KINDSTRIDE_BASE_DOMAIN": ("BASE_DOMAIN", "localhost", "tenants live at <slug>.<base domain>"),
    "KINDSTRIDE_PREFERRED_SCHEME": ("PREFERRED_URL_SCHEME", "http", "scheme of links in emails"),
    "KINDSTRIDE_PLUGINS": ("PLUGINS", "core_rules", "comma-separated allowlist of plugin entry points to load"),
    "KINDSTRIDE_TENANTS_DIR": ("TENANTS_DIR", str(REPO_ROOT / "tenants"), "folder of tenant folders to sync"),
    "KINDSTRIDE_SMTP_HOST": ("SMTP_HOST", None, "SMTP server for outgoing mail; unset writes mail to the log"),
    "KINDSTRIDE_SMTP_PORT": ("SMTP_PORT", "25", "SMTP port"),
    "KINDSTRIDE_SMTP_USERNAME": ("SMTP_USERNAME", None, "SMTP user"),
    "KINDSTRIDE_SMTP_PASSWORD": ("SMTP_PASSWORD", None, "SMTP password"),
    "KINDSTRIDE_SMTP_STARTTLS": ("SMTP_STARTTLS", "false", "true to upgrade SMTP with STARTTLS"),
    "KINDSTRIDE_MAIL_FROM": ("MAIL_FROM", "no-reply@kindstride.localhost", "sender address of outgoing mail"),
    "KINDSTRIDE_GATEWAY_ENDPOINTS": (
        "GATEWAY_ENDPOINTS", "",
        "gateway API addresses, e.g. 'vnpay.payment_url=https://...,vnpay.api_url=https://...' "
        "(default: each gateway's sandbox; stripe.api_base unset means Stripe itself)",
    ),
    "KINDSTRIDE_INSTANCE_PATH": ("INSTANCE_PATH", str(REPO_ROOT / "instance"), "writable folder for local state"),
    "KINDSTRIDE_STRAVA_CLIENT_ID": ("STRAVA_CLIENT_ID", None, "the platform's Strava API app; unset turns Strava off"),
    "KINDSTRIDE_STRAVA_CLIENT_SECRET": ("STRAVA_CLIENT_SECRET", None, "the Strava API app's client secret"),
    "KINDSTRIDE_STRAVA_VERIFY_TOKEN": (
        "STRAVA_VERIFY_TOKEN", None, "verify_token of the Strava webhook subscription (callback /strava/webhook)",
    ),
    "KINDSTRIDE_STRAVA_API_URL": ("STRAVA_API_URL", "https://www.strava.com/api/v3", "Strava's REST API"),
    "KINDSTRIDE_STRAVA_OAUTH_URL": ("STRAVA_OAUTH_URL", "https://www.strava.com/oauth", "Strava's OAuth endpoints"),
    # Operations (kindstride.ops and deploy/gunicorn.conf.py; see deploy/OPERATIONS.md).
    "KINDSTRIDE_LOG_FORMAT": ("LOG_FORMAT", "text", "json (one JSON object a line) or text"),
    "KINDSTRIDE_LOG_LEVEL": ("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    "KINDSTRIDE_METRICS_TOKEN": (
        "METRICS_TOKEN", None, "bearer token /metrics requires; unset serves /metrics to anyone who reaches it",
    ),
    "KINDSTRIDE_TRUSTED_PROXIES": (
        "TRUSTED_PROXIES", "0",
        "how many proxies in front of the app set X-Forwarded-For/-Proto (nginx or an ingress: 1)",
    ),
    "KINDSTRIDE_WEB_BIND": ("WEB_BIND", "0.0.0.0:8000", "address `kindstride web` (gunicorn) listens on"),
    "KINDSTRIDE_WEB_WORKERS": ("WEB_WORKERS", "2", "gunicorn worker processes per web instance"),
    "KINDSTRIDE_WEB_THREADS": ("WEB_THREADS", "4", "threads per gunicorn worker"),
    "KINDSTRIDE_WEB_TIMEOUT": ("WEB_TIMEOUT", "60", "seconds a request may take before gunicorn restarts its worker"),
}

PRODUCTION_REQUIRED = ("KINDSTRIDE_SECRET_KEY", "KINDSTRIDE_DATABASE_URL", "KINDSTRIDE_SECRETS_KEY")


class ConfigError(RuntimeError):
    """The configuration cannot run safely; the message names the variable to set."""


def load_config(environ=None, overrides=None):
    environ = os.environ if environ is None else environ
    config = {key: environ.get(name, default) for name, (key, default, _help) in ENV_VARIABLES.items()}
    config.update(overrides or {})
    config["PRODUCTION"] = config["ENV"] == "production"
    if config["PRODUCTION"]:
        missing = [
            name for name in PRODUCTION_REQUIRED
            if not config.get(ENV_VARIABLES[name][0])
        ]
        if missing:
            raise ConfigError(f"production mode needs {', '.join(missing)} to be set")
    instance = Path(config["INSTANCE_PATH"])
    instance.mkdir(parents=True, exist_ok=True)
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = _demo_secret(instance / "secret_key")
    if not config["SECRETS_KEY"]:
        config["SECRETS_KEY"] = _demo_secret(instance / "secrets_key", fernet=True)
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{instance / 'kindstride.sqlite'}"
    config["MIGRATE_DATABASE_URL"] = config["MIGRATE_DATABASE_URL"] or config["DATABASE_URL"]
    config["SMTP_PORT"] = int(config["SMTP_PORT"])
    config["SMTP_STARTTLS"] = str(config["SMTP_STARTTLS"]).lower() in ("1", "true", "yes")
    config["PLUGINS"] = _as_list(config["PLUGINS"])
    if isinstance(config["GATEWAY_ENDPOINTS"], str):
        config["GATEWAY_ENDPOINTS"] = dict(item.split("=", 1) for item in _as_list(config["GATEWAY_ENDPOINTS"]))
    return config


def _as_list(value):
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


def _demo_secret(path, fernet=False):
    """A secret generated once and kept in the instance folder: for the demo only (production requires one)."""
    if not path.exists():
        from cryptography.fernet import Fernet

        value = Fernet.generate_key().decode() if fernet else secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
    return path.read_text().strip()
