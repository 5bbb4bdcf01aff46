"""Bearer API tokens: each request names a token of this tenant with the scope the endpoint needs.

A token's lookup (the token, its account and the account's roles) is remembered per process for a few seconds,
keyed by the tenant and the token's hash, and checked against the tenant's *auth generation* in Redis on every
use: any committed change to that tenant's accounts, roles or tokens (a revocation, a role taken away, an
account disabled) bumps the generation, so the very next request everywhere reads the database again. Without
Redis the cache of the process that made the change is cleared on commit, and other processes see it within
NO_REDIS_CACHE_SECONDS. An expired token is refused from the cache too. last_used_at is recorded at most once
a minute per token (LAST_USED_GRANULARITY), not on every request.
"""

import functools
import logging
import random
import threading
import time
from functools import wraps

import sqlalchemy as sa
from flask import current_app, g, request
from flask_smorest import abort
from redis import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.accounts.models import ApiToken, User, UserRole
from kindstride.accounts.services import LAST_USED_GRANULARITY, PRIVILEGED_SCOPES
from kindstride.accounts.tokens import hash_token
from kindstride.db import db, utcnow
from kindstride.jobs.queue import redis_or_none
from kindstride.tenancy.resolution import CachedRow, attach_cached
from kindstride.tenancy.scope import current_tenant_id

log = logging.getLogger(__name__)

BEARER_SCHEME = {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token (ks_...)"}}
# For @blp.doc(**BEARER): marks an endpoint as token-authenticated in the OpenAPI document.
BEARER = {"security": [{"bearerAuth": []}]}

DEFAULT_CACHE_SECONDS = 600.0  # with Redis: every change is seen through the generation; this only bounds memory
NO_REDIS_CACHE_SECONDS = 5.0  # without Redis other processes' changes are seen within this time
MAX_CACHED_TOKENS = 10_000  # a few kB each: bounded well under the web worker memory goal
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def token_required(scope):
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            kind, _sep, token = header.partition(" ")
            if kind.lower() != "bearer" or not token:
                abort(401, message="Authorization: send 'Bearer <API token>'")
            found = _authenticate(token.strip())
            if found is None:
                abort(401, message="Authorization: the token is unknown, expired or revoked on this site")
            user, scopes, roles = found
            if scope not in scopes:
                abort(403, message=f"Authorization: the token lacks the {scope!r} scope")
            # A role taken away after the token was made takes its privileged scope with it.
            if scope in PRIVILEGED_SCOPES and not roles & PRIVILEGED_SCOPES[scope]:
                abort(403, message=f"Authorization: the {scope!r} scope needs a role this account no longer has")
            g.user, g.roles = user, roles
            return view(*args, **kwargs)

        return wrapper

    return decorator


# ---------------------------------------------------------------------------------------------- the cache

_cache: dict = {}  # (tenant id, token hash) -> _Entry
_lock = threading.Lock()
_local_generation = 0  # bumped when this process commits an account change: entries read before it are dropped
_CHANGED = "kindstride.auth_changed"  # session.info: tenants whose accounts changed in this transaction
_NEW_USERS = "kindstride.auth_new_users"  # session.info: ids of the accounts created in this transaction


class _Entry:
    __slots__ = ("expires", "generation", "local", "user", "token", "roles", "last_used_at", "scopes")

    def __init__(self, expires, generation, local, user, token, roles, last_used_at):
        self.expires, self.generation, self.local = expires, generation, local
        self.user, self.token, self.roles, self.last_used_at = user, token, roles, last_used_at
        self.scopes = frozenset(token.values()["scopes"] or ())


def _authenticate(token):
    """(user, the token's scopes, roles) for a valid token of the current tenant, or None. The token itself is
    only read (its last use is recorded with one UPDATE): it stays a cached row, not an object of the session."""
    tenant_id = current_tenant_id()
    if tenant_id is None:
        return None  # a token is only ever a token on its own tenant's site
    seconds = float(current_app.config.get("API_TOKEN_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
    key = (tenant_id, hash_token(token))
    local = _local_generation
    generation = _generation(tenant_id) if seconds > 0 else False
    if generation == b"":  # no Redis: nothing tells this process about changes made by others but time
        seconds = min(seconds, NO_REDIS_CACHE_SECONDS)
    entry = _cache.get(key)
    now = time.monotonic()
    # generation False (no cache, or Redis configured but not answering): the database decides.
    if (generation is False or entry is None or entry.expires <= now or entry.generation != generation
            or entry.local != local):
        found = _read_token(tenant_id, key[1])
        if found is None:
            return None
        entry = _Entry(now + seconds, generation, local, *found)
        if generation is not False and generation is not None:
            with _lock:
                if local == _local_generation:
                    if len(_cache) >= MAX_CACHED_TOKENS:
                        _cache.clear()
                    _cache[key] = entry
    if entry.token["expires_at"] < utcnow():
        return None
    _record_use(entry)
    return attach_cached(User, entry.user), entry.scopes, entry.roles


def _read_token(tenant_id, token_hash):
    """(user row, token row, roles, last used at) of a valid token, read in one statement, or None."""
    query = _token_query(db.session.get_bind().dialect.name)
    row = db.session.connection().execute(query, {"token_hash": token_hash, "tenant": tenant_id}).first()
    if row is None:
        return None
    values = row._mapping
    token = CachedRow.from_values({c.key: values[f"token_{c.key}"] for c in ApiToken.__table__.c})
    user = CachedRow.from_values({c.key: values[f"user_{c.key}"] for c in User.__table__.c})
    if token["revoked_at"] is not None or user["is_disabled"]:
        return None
    roles = values["roles"] or ()
    roles = frozenset(roles.split(",") if isinstance(roles, str) else roles)
    return user, token, roles, token["last_used_at"]


@functools.cache
def _token_query(dialect):
    """A token, its account and the account's roles, as columns (built once; tenant_id bound in each part)."""
    tokens, users, roles = ApiToken.__table__, User.__table__, UserRole.__table__
    tenant = sa.bindparam("tenant")
    aggregate = sa.func.array_agg(roles.c.role) if dialect == "postgresql" else sa.func.group_concat(roles.c.role, ",")
    return (sa.select(*[c.label(f"token_{c.key}") for c in tokens.c], *[c.label(f"user_{c.key}") for c in users.c],
                      sa.select(aggregate).where(roles.c.tenant_id == tenant, roles.c.user_id == users.c.id)
                      .scalar_subquery().label("roles"))
            .join_from(tokens, users, sa.and_(users.c.tenant_id == tenant, users.c.id == tokens.c.user_id))
            .where(tokens.c.tenant_id == tenant, tokens.c.token_hash == sa.bindparam("token_hash")))


def cached_caller(tenant_id, token, scope):
    """(user id, (generation key, generation)) for a valid token of this tenant with `scope`, from this process's
    cache alone, or None when the cache cannot say (then token_required decides, reading the database). The
    caller must check that the key still holds that generation (in the same Redis script as its own read), and
    answer nothing from the cache otherwise. For endpoints that need nothing of the caller but the id."""
    if scope in PRIVILEGED_SCOPES:
        return None
    entry = _cache.get((tenant_id, hash_token(token)))
    if entry is None or entry.expires <= time.monotonic() or entry.local != _local_generation:
        return None
    now = utcnow()
    if entry.token["expires_at"] < now or scope not in entry.scopes:
        return None
    if entry.last_used_at is None or now - entry.last_used_at >= LAST_USED_GRANULARITY:
        return None  # last_used_at is due: token_required records it
    if not entry.generation:
        return None  # no Redis: no generation to check against
    return entry.user.id, (_generation_key(tenant_id), entry.generation)


def _record_use(entry):
    """last_used_at, at most once a minute per token and process."""
    now = utcnow()
    if entry.last_used_at is not None and now - entry.last_used_at < LAST_USED_GRANULARITY:
        return
    entry.last_used_at = now
    # On the connection, not through the session: bookkeeping, no change of access (no generation bump).
    db.session.connection().execute(_RECORD_USE, {"in_tenant": entry.token["tenant_id"],
                                                  "token_id": entry.token["id"], "now": now})
    if request.method in READ_METHODS:
        _commit_bookkeeping()  # a write's own commit records it


_TOKENS = ApiToken.__table__
_RECORD_USE = (sa.update(_TOKENS).where(_TOKENS.c.tenant_id == sa.bindparam("in_tenant"),
                                        _TOKENS.c.id == sa.bindparam("token_id"))
               .values(last_used_at=sa.bindparam("now")))


def _fresh_generation():
    return random.getrandbits(63)


def _commit_bookkeeping():
    """Commit a read request's transaction, which wrote nothing but last_used_at: without waiting for the WAL
    flush (a crash could forget the last fraction of a second of last_used_at, nothing else)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
    db.session.commit()


def _generation_key(tenant_id):
    return f"kindstride:t{tenant_id}:auth_generation"


def _generation(tenant_id):
    """The tenant's auth generation (bytes, created at a random value on first use); b"" without Redis (then
    the TTL alone bounds staleness); None if it vanished meanwhile; False when Redis fails."""
    redis = redis_or_none()
    if redis is None:
        return b""
    try:
        value = redis.get(_generation_key(tenant_id))
        if value is None:
            # Created afresh (first use, or Redis restarted or flushed): a random value, which no entry remembers.
            redis.set(_generation_key(tenant_id), _fresh_generation(), nx=True)
            value = redis.get(_generation_key(tenant_id))
        return value
    except RedisError as error:
        log.warning("API token cache: Redis unavailable (%s); reading tokens from the database", error)
        return False


def clear_cache():
    global _local_generation
    with _lock:
        _local_generation += 1
        _cache.clear()


def _changes_access(obj, new_users):
    # An account created in this transaction (and the roles it starts with) has no token yet: sign-ups leave
    # the caches warm.
    if isinstance(obj, User | UserRole):
        return (obj.id if isinstance(obj, User) else obj.user_id) not in new_users
    if isinstance(obj, ApiToken):
        state = sa.inspect(obj)
        if state.pending or state.deleted or state.was_deleted:
            return True
        changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
        return bool(changed - {"last_used_at"})
    return False


@event.listens_for(Session, "after_flush")
def _note_account_changes(session, flush_context):
    new_users = session.info.setdefault(_NEW_USERS, set())
    new_users.update(obj.id for obj in session.new if isinstance(obj, User))
    for obj in (*session.new, *session.dirty, *session.deleted):
        if _changes_access(obj, new_users):
            session.info.setdefault(_CHANGED, set()).add(obj.tenant_id)


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_account_changes(state):
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and mapper.class_ in (User, UserRole, ApiToken):
        tenant_id = current_tenant_id()
        state.session.info.setdefault(_CHANGED, set()).add(tenant_id)


@event.listens_for(Session, "after_commit")
def _bump_after_commit(session):
    if session.in_nested_transaction():
        return
    session.info.pop(_NEW_USERS, None)
    tenants = session.info.pop(_CHANGED, None)
    if not tenants:
        return
    clear_cache()
    try:
        redis = redis_or_none()
    except RuntimeError:  # outside an app context: other processes see it within API_TOKEN_CACHE_SECONDS
        return
    if redis is None:
        return
    try:
        # A new random value rather than an increment: a counter lost with a Redis restart and counted again from
        # zero could come back to a value some process's entries remember.
        pipe = redis.pipeline()
        for tenant_id in tenants:
            if tenant_id is None:  # a change outside any tenant scope: every tenant's cache goes
                for key in redis.scan_iter("kindstride:t*:auth_generation"):
                    pipe.set(key, _fresh_generation())
            else:
                pipe.set(_generation_key(tenant_id), _fresh_generation())
        pipe.execute()
    except RedisError as error:
        log.warning("API token cache: cannot bump the auth generation (%s)", error)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session):
    if not session.in_nested_transaction():
        session.info.pop(_CHANGED, None)
        session.info.pop(_NEW_USERS, None)
