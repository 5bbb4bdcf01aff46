"""Provisioning and lifecycle of tenants: sync from tenants/, create, suspend, activate."""

import os
import tomllib
from pathlib import Path

import sqlalchemy as sa
from flask import current_app
from marshmallow import ValidationError

from kindstride.crypto import secrets_box
from kindstride.db import db
from kindstride.tenancy.models import ACTIVE, SUSPENDED, Tenant, TenantDomain, TenantSecret
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.settings_schema import TenantSettingsSchema, flatten_errors

SSO_SECRET = "sso.client_secret"


class TenantConfigError(ValueError):
    """A tenant's settings are invalid; the message names the file and the fields."""


def load_tenant_file(path: Path) -> dict:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TenantConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        settings = TenantSettingsSchema().load(raw)
    except ValidationError as error:
        raise TenantConfigError(f"{path}: " + "; ".join(flatten_errors(error.messages))) from None
    if settings["slug"] != path.parent.name:
        raise TenantConfigError(f"{path}: slug {settings['slug']!r} differs from its folder {path.parent.name!r}")
    unknown = set(settings["plugins"]) - set(current_app.config["PLUGINS"])
    if unknown:
        raise TenantConfigError(f"{path}: plugins: not installed or not allowlisted: {', '.join(sorted(unknown))}")
    return settings


def sync_tenants(folder: Path, environ=None) -> list[str]:
    """Create or update one tenant per tenant.toml below folder; returns a report line per tenant.

    Every file is validated before anything is written, so one bad file changes nothing.
    """
    environ = os.environ if environ is None else environ
    files = sorted(Path(folder).glob("*/tenant.toml"))
    all_settings = [load_tenant_file(path) for path in files]
    report = [apply_settings(settings, environ) for settings in all_settings]
    db.session.commit()
    return report


def apply_settings(settings: dict, environ) -> str:
    tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == settings["slug"]))
    created = tenant is None
    if created:
        tenant = Tenant(slug=settings["slug"], status=ACTIVE)
        db.session.add(tenant)
    tenant.name = settings["name"]
    tenant.locale = settings["locale"]
    tenant.currency = settings["currency"]
    tenant.timezone = settings["timezone"]
    tenant.settings = {key: settings[key] for key in ("plugins", "branding", "sso", "contact_email")}
    tenant.settings["gateways"] = {name: {key: value for key, value in values.items() if not key.endswith("_env")}
                                   for name, values in settings["gateways"].items()}
    _set_domains(tenant, settings["domains"])
    db.session.flush()
    notes = []
    with tenant_scope(tenant.id):
        for name, values in settings["gateways"].items():
            for key, variable in values.items():
                if not key.endswith("_env"):
                    continue
                field = key.removesuffix("_env")
                if environ.get(variable):
                    store_secret(f"gateway.{name}.{field}", environ[variable])
                elif load_secret(f"gateway.{name}.{field}") is None:
                    notes.append(f"{name} off until {variable} is set")
    if settings["sso"]:
        secret = environ.get(settings["sso"]["client_secret_env"])
        with tenant_scope(tenant.id):
            if secret:
                store_secret(SSO_SECRET, secret)
            elif load_secret(SSO_SECRET) is None:
                notes.append(f"SSO off until {settings['sso']['client_secret_env']} is set")
    return f"{'created' if created else 'updated'} {tenant.slug}" + (f" ({'; '.join(notes)})" if notes else "")


def _set_domains(tenant, domains):
    wanted = {domain.lower() for domain in domains}
    for existing in list(tenant.domains):
        if existing.domain not in wanted:
            tenant.domains.remove(existing)
    have = {d.domain for d in tenant.domains}
    for domain in sorted(wanted - have):
        owner = db.session.get(TenantDomain, domain)
        if owner is not None:
            raise TenantConfigError(f"domains: {domain} already belongs to tenant {owner.tenant.slug}")
        tenant.domains.append(TenantDomain(domain=domain))


def create_tenant(slug, name, locale="en", currency="USD", timezone="UTC") -> Tenant:
    settings = {"slug": slug, "name": name, "locale": locale, "currency": currency, "timezone": timezone,
                "plugins": list(current_app.config["PLUGINS"])}
    try:
        settings = TenantSettingsSchema().load(settings)
    except ValidationError as error:
        raise TenantConfigError("; ".join(flatten_errors(error.messages))) from None
    if db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise TenantConfigError(f"slug: a tenant {slug!r} already exists")
    apply_settings(settings, environ={})
    db.session.commit()
    return db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))


def get_tenant(slug) -> Tenant:
    tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise TenantConfigError(f"no tenant {slug!r}")
    return tenant


def set_status(slug, status) -> Tenant:
    assert status in (ACTIVE, SUSPENDED)
    tenant = get_tenant(slug)
    tenant.status = status
    db.session.commit()
    return tenant


def store_secret(name, plaintext):
    secret = db.session.scalar(sa.select(TenantSecret).where(TenantSecret.name == name))
    if secret is None:
        secret = TenantSecret(name=name, ciphertext="")
        db.session.add(secret)
    secret.ciphertext = secrets_box().encrypt(plaintext)
    db.session.flush()


def load_secret(name):
    secret = db.session.scalar(sa.select(TenantSecret).where(TenantSecret.name == name))
    return None if secret is None else secrets_box().decrypt(secret.ciphertext)
