"""Find the tenant a request is for, from its Host header.

`<slug>.<base domain>` and custom domains (tenant_domains) lead to a tenant; the bare base domain is
the platform operator's site. Anything else is unknown.

Every request asks this, so each process remembers the answer per host for TENANT_CACHE_SECONDS (default 1 s):
a tenant suspended, renamed or given a domain by another process (the operator console, `kindstride tenants`)
is seen everywhere within that time, and in the process that committed the change at once (its cache is cleared
on commit). A hit costs no query: the remembered row is attached to the request's session as it was read, with
no round trip (a detached copy added to the session), so views use and change g.tenant as before.
"""

import json
import re
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from kindstride.db import db
from kindstride.tenancy.models import Tenant, TenantDomain

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_CACHE_SECONDS = 1.0
MAX_CACHED_HOSTS = 10_000  # unknown hosts are remembered too; past this many the cache starts again
_CHANGED = "kindstride.tenancy_changed"  # session.info: a tenant or domain row changed in this transaction


@dataclass(frozen=True)
class HostMatch:
    platform: bool = False
    tenant: Tenant | None = None


def normalise_host(host: str) -> str:
    host = (host or "").strip().lower().rstrip(".")
    if host.startswith("["):  # IPv6 literal: keep the brackets, drop the port
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def resolve_host(host: str, base_domain: str) -> HostMatch | None:
    host = normalise_host(host)
    base_domain = base_domain.lower()
    if host == base_domain:
        return HostMatch(platform=True)
    seconds = _cache_seconds()
    key = (host, base_domain)
    now = time.monotonic()
    entry = _cache.get(key)
    if entry is not None and entry[0] > now:
        values = entry[1]
        return None if values is None else HostMatch(tenant=_attached(values))
    generation = _generation
    values = _lookup(host, base_domain)
    if seconds > 0:
        with _lock:
            if generation == _generation:  # no tenant changed while we read: safe to remember
                if len(_cache) >= MAX_CACHED_HOSTS:
                    _cache.clear()
                _cache[key] = (now + seconds, values)
    return None if values is None else HostMatch(tenant=_attached(values))


def cached_tenant(host: str, base_domain: str):
    """The remembered row (a CachedRow) of the tenant a host leads to, if this process remembers it now; else None
    (unknown, the operator's site, or not remembered: ask resolve_host). No query, no session."""
    entry = _cache.get((normalise_host(host), base_domain.lower()))
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1]


def _lookup(host, base_domain):
    """The row (a CachedRow) of the tenant a host leads to, or None: one statement, built once."""
    suffix = "." + base_domain
    if host.endswith(suffix):
        slug = host[: -len(suffix)]
        if not SLUG_PATTERN.match(slug):
            return None
        row = db.session.connection().execute(_BY_SLUG, {"host_slug": slug}).first()
    else:
        row = db.session.connection().execute(_BY_DOMAIN, {"host_domain": host}).first()
    if row is None:
        return None
    values = row._mapping
    return CachedRow.from_values({column.key: values[column] for column in _TENANTS.c})


_TENANTS, _DOMAINS = Tenant.__table__, TenantDomain.__table__
_BY_SLUG = sa.select(_TENANTS).where(_TENANTS.c.slug == sa.bindparam("host_slug"))
_BY_DOMAIN = (sa.select(_TENANTS).join(_DOMAINS, _DOMAINS.c.tenant_id == _TENANTS.c.id)
              .where(_DOMAINS.c.domain == sa.bindparam("host_domain")))


# ------------------------------------------------------------------------------------------- the cache

_cache: dict = {}  # (host, base domain) -> (expires at, column values of the tenant or None)
_lock = threading.Lock()
_generation = 0  # bumped by every clear, so a lookup racing a change is not remembered


def _cache_seconds():
    if not has_app_context():
        return DEFAULT_CACHE_SECONDS
    return float(current_app.config.get("TENANT_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))


def _attached(values):
    return attach_cached(Tenant, values)


_RESTORE = "kindstride.cached_rows"  # session.info: {(class, id): CachedRow} attached from a cache


class CachedRow:
    """A row's column values as a cache keeps them: plain values as they are, JSON values (dicts, lists) as
    their JSON text, so each request gets its own copies for a json.loads (cheaper than a deep copy)."""

    __slots__ = ("id", "plain", "json")

    def __init__(self, plain, json_text):
        self.id, self.plain, self.json = plain["id"], plain, json_text

    @classmethod
    def of(cls, obj):
        return cls.from_values({attr.key: getattr(obj, attr.key) for attr in sa.inspect(type(obj)).column_attrs})

    @classmethod
    def from_values(cls, values):
        """From every column's value, by attribute name."""
        plain, mutable = {}, {}
        for name, value in values.items():
            (mutable if isinstance(value, dict | list) else plain)[name] = value
        return cls(plain, json.dumps(mutable) if mutable else None)

    def values(self):
        return {**self.plain, **json.loads(self.json)} if self.json else dict(self.plain)

    def __getitem__(self, name):
        return self.plain[name]


def attach_cached(cls, row):
    """A row remembered by a cache (a CachedRow), as a persistent object of this session, without a query. Each
    request gets its own copies of mutable values (settings), so a view changing them in place never changes the
    cache. A rollback before the next commit puts the remembered values back rather than expiring them, so the
    object stays readable without the database (the error pages of "database unavailable" show the tenant's
    site)."""
    key = identity_key(cls, row.id)
    existing = db.session.identity_map.get(key)
    if existing is not None:
        return existing
    obj = cls(**row.values())
    make_transient_to_detached(obj)  # as if loaded and then detached: clean, with every column loaded
    db.session.add(obj)
    db.session.info.setdefault(_RESTORE, {})[key] = row
    return obj


@event.listens_for(Session, "after_soft_rollback")
def _restore_cached_rows(session, previous_transaction):
    remembered = session.info.get(_RESTORE)
    if not remembered:
        return
    for key, row in remembered.items():
        obj = session.identity_map.get(key)
        if obj is None:
            continue
        expired = sa.inspect(obj).expired_attributes
        if expired:
            values = row.values()
            for name in list(expired):
                if name in values:
                    set_committed_value(obj, name, values[name])


@event.listens_for(Session, "after_commit")
def _forget_cached_rows(session):
    if not session.in_nested_transaction():
        session.info.pop(_RESTORE, None)  # committed: the database is the reference again


def clear_cache():
    global _generation
    with _lock:
        _generation += 1
        _cache.clear()


@event.listens_for(Session, "after_flush")
def _note_tenant_changes(session, flush_context):
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Tenant | TenantDomain):
            session.info[_CHANGED] = True
            clear_cache()  # now as well: a lookup in this process must not remember the state before the commit
            return


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_tenant_changes(state):
    if (state.is_update or state.is_delete) and state.bind_mapper is not None \
            and state.bind_mapper.class_ in (Tenant, TenantDomain):
        state.session.info[_CHANGED] = True
        clear_cache()


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session):
    if session.info.pop(_CHANGED, False):
        clear_cache()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session):
    if session.info.pop(_CHANGED, False):
        clear_cache()
