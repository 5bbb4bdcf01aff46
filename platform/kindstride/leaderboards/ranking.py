"""Exact individual ranks in O(log n): a Redis sorted set per challenge, kept in step with participant_totals.

Every key carries the tenant and the challenge (`kindstride:t<tenant>:c<challenge>:...`). Members sort
lexicographically (all Redis scores are 0) in board order: higher score, then who reached it first, then the
lower bib; ZRANK of a participant's member is the number of participants ahead of them.

How the set stays exact, whatever order processes commit and push in:
- every recomputation of a total bumps its `version`; the set keeps, per registration, the member of the
  highest version it was sent (an older push arriving late changes nothing);
- before a transaction that changed totals commits, each changed registration is marked *pending* (a
  counter); after the commit its committed row is pushed and the mark removed (after a rollback only the
  mark is removed). A reader treats pending registrations as possibly stale and pushes their committed rows
  from the database itself before ranking, so a push lost to a crash is never trusted;
- the set is only read once it has been built from the database (`ready`); building records a generation,
  and anything that changes totals wholesale (a bulk import) bumps the generation before and after its
  commit, so a build that may have missed it never declares the set ready.
Without Redis, or while the set is not ready, ranks come from SQL, which is exact by definition.
"""

import logging

import sqlalchemy as sa
from flask import current_app
from redis import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.db import db

log = logging.getLogger(__name__)
_MARKS = "kindstride.board_marks"  # session.info: {(tenant, challenge): {registration id: marks}}
_PUSH = "kindstride.board_push"  # session.info: {(tenant, challenge): {registration: (version, member)}}
_REREAD = "kindstride.board_reread"  # session.info: a savepoint rolled back since totals were marked
MAX_SCORE = 2**62
BUILD_BATCH = 5000

# Apply (registration, version, member) triples, keeping the newest version of each registration.
_APPLY = """
local applied = 0
for i = 1, #ARGV, 3 do
  local reg, version, member = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', KEYS[3], reg)
  if not current or version > tonumber(current) then
    local old = redis.call('HGET', KEYS[2], reg)
    if old then redis.call('ZREM', KEYS[1], old) end
    redis.call('ZADD', KEYS[1], 0, member)
    redis.call('HSET', KEYS[2], reg, member)
    redis.call('HSET', KEYS[3], reg, version)
    applied = applied + 1
  end
end
return applied
"""
# Push committed rows, then take their pending marks away (ARGV: count of triples, triples, then reg/count pairs).
_PUSH_AND_UNMARK = """
local n = tonumber(ARGV[1])
for i = 2, 1 + 3 * n, 3 do
  local reg, version, member = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', KEYS[3], reg)
  if not current or version > tonumber(current) then
    local old = redis.call('HGET', KEYS[2], reg)
    if old then redis.call('ZREM', KEYS[1], old) end
    redis.call('ZADD', KEYS[1], 0, member)
    redis.call('HSET', KEYS[2], reg, member)
    redis.call('HSET', KEYS[3], reg, version)
  end
end
for i = 2 + 3 * n, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[4], ARGV[i], -tonumber(ARGV[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[4], ARGV[i])
  end
end
return 1
"""
# The rank of a member: {rank} | {-1} not ready | {-2, pending registrations...} | {-3} member not in the set.
_RANK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local pending = redis.call('HKEYS', KEYS[2])
if #pending > 0 and ARGV[2] == '0' then
  table.insert(pending, 1, -2)
  return pending
end
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
if not rank then return {-3} end
return {rank}
"""
# Declare the set ready if no wholesale change happened since the build began.
_READY = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def keys(tenant_id, challenge_id):
    prefix = f"kindstride:t{tenant_id}:c{challenge_id}"
    return {"board": f"{prefix}:board", "members": f"{prefix}:members", "versions": f"{prefix}:versions",
            "pending": f"{prefix}:pending", "ready": f"{prefix}:ready", "generation": f"{prefix}:generation",
            "building": f"{prefix}:building"}


def member(registration_id, score, reached_at, bib):
    """The sort key: score descending, then reached_at ascending (none last), then bib; fixed-width hex."""
    reached = "f" * 14 if reached_at is None else f"{_micros(reached_at):014x}"
    return f"{MAX_SCORE - score:016x}{reached}{bib:08x}:{registration_id}"


def _micros(moment):
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _redis():
    if not current_app.config.get("REDIS_URL"):
        return None
    return current_app.extensions.get("kindstride.redis")


# -------------------------------------------------------------------------------------------------- writes


def mark_changed(total):
    """A participant total changed in this transaction (and is flushed): mark it pending now, push it after
    the commit."""
    redis = _redis()
    if redis is None:
        return
    key = (total.tenant_id, total.challenge_id)
    try:
        redis.hincrby(keys(*key)["pending"], total.registration_id, 1)
    except RedisError as error:
        log.warning("leaderboard cache: cannot mark a change (%s); readers may fall back to SQL", error)
        return
    marks = db.session.info.setdefault(_MARKS, {}).setdefault(key, {})
    marks[total.registration_id] = marks.get(total.registration_id, 0) + 1
    pushes = db.session.info.setdefault(_PUSH, {}).setdefault(key, {})
    pushes[total.registration_id] = (total.version,
                                      member(total.registration_id, total.score, total.reached_at, total.bib))


@event.listens_for(Session, "after_soft_rollback")
def _savepoint_rolled_back(session, previous_transaction):
    """A savepoint rolled back: the values noted since may not be the ones committed; read them again."""
    if previous_transaction.nested and session.info.get(_MARKS):
        session.info[_REREAD] = True


@event.listens_for(Session, "before_commit")
def _reread_if_uncertain(session):
    if session.in_nested_transaction() or not session.info.pop(_REREAD, False) or not session.info.get(_MARKS):
        return
    from kindstride.leaderboards.models import ParticipantTotal
    from kindstride.tenancy.scope import tenant_scope

    session.flush()
    pushes = {}
    for key, registrations in session.info[_MARKS].items():
        with tenant_scope(key[0]):
            rows = session.execute(sa.select(ParticipantTotal.registration_id, ParticipantTotal.score,
                                             ParticipantTotal.reached_at, ParticipantTotal.bib,
                                             ParticipantTotal.version)
                                   .where(ParticipantTotal.registration_id.in_(list(registrations)))).all()
        pushes[key] = {r.registration_id: (r.version, member(r.registration_id, r.score, r.reached_at, r.bib))
                       for r in rows}
    session.info[_PUSH] = pushes


@event.listens_for(Session, "after_commit")
def _push_after_commit(session):
    if session.in_nested_transaction():
        return
    marks = session.info.pop(_MARKS, None)
    pushes = session.info.pop(_PUSH, {})
    if marks:
        _send(marks, pushes)


@event.listens_for(Session, "after_rollback")
def _unmark_after_rollback(session):
    if session.in_nested_transaction():
        return
    session.info.pop(_PUSH, None)
    session.info.pop(_REREAD, None)
    marks = session.info.pop(_MARKS, None)
    if marks:
        _send(marks, {})


def _send(marks, pushes):
    try:
        redis = _redis()
    except RuntimeError:  # outside an app context: the marks stay, and readers repair those entries
        return
    if redis is None:
        return
    script = redis.register_script(_PUSH_AND_UNMARK)
    for key, registrations in marks.items():
        names = keys(*key)
        triples = pushes.get(key, {})
        args = [len(triples)]
        for registration_id, (version, sort_key) in triples.items():
            args += [registration_id, version, sort_key]
        for registration_id, count in registrations.items():
            args += [registration_id, count]
        try:
            script(keys=[names["board"], names["members"], names["versions"], names["pending"]], args=args)
        except RedisError as error:
            log.warning("leaderboard cache: cannot push committed totals (%s); they stay pending", error)


def invalidate(tenant_id, challenge_id):
    """A wholesale change (a bulk import): call before and after its commit, then build()."""
    redis = _redis()
    if redis is None:
        return
    names = keys(tenant_id, challenge_id)
    try:
        pipe = redis.pipeline()
        pipe.incr(names["generation"])
        pipe.delete(names["ready"])
        pipe.execute()
    except RedisError as error:
        log.warning("leaderboard cache: cannot invalidate (%s)", error)


def build(tenant_id, challenge_id):
    """Build the set from the database (in the tenant scope); it is declared ready unless invalidated meanwhile.
    Returns True when the set is ready."""
    from kindstride.leaderboards.models import ParticipantTotal

    redis = _redis()
    if redis is None:
        return False
    names = keys(tenant_id, challenge_id)
    if not redis.set(names["building"], "1", nx=True, ex=300):
        return False  # another process is building it
    try:
        generation = redis.get(names["generation"]) or b"0"
        if not redis.exists(names["generation"]):
            redis.set(names["generation"], generation)
        redis.delete(names["ready"], names["board"], names["members"], names["versions"])
        rows = db.session.execute(
            sa.select(ParticipantTotal.registration_id, ParticipantTotal.score, ParticipantTotal.reached_at,
                      ParticipantTotal.bib, ParticipantTotal.version)
            .where(ParticipantTotal.challenge_id == challenge_id)).all()
        apply = redis.register_script(_APPLY)
        for start in range(0, len(rows), BUILD_BATCH):
            args = []
            for r in rows[start:start + BUILD_BATCH]:
                args += [r.registration_id, r.version, member(r.registration_id, r.score, r.reached_at, r.bib)]
            apply(keys=[names["board"], names["members"], names["versions"]], args=args)
        return bool(redis.register_script(_READY)(keys=[names["ready"], names["generation"]],
                                                  args=[generation]))
    finally:
        redis.delete(names["building"])


# --------------------------------------------------------------------------------------------------- reads


def cached_rank(tenant_id, total, build_missing=True):
    """The 1-based rank of a participant total on the unfiltered board, or None (then SQL answers)."""
    redis = _redis()
    if redis is None:
        return None
    from kindstride.leaderboards.models import ParticipantTotal

    names = keys(tenant_id, total.challenge_id)
    mine = member(total.registration_id, total.score, total.reached_at, total.bib)
    try:
        rank_script = redis.register_script(_RANK)
        answer = rank_script(keys=[names["ready"], names["pending"], names["board"]], args=[mine, "0"])
        if answer[0] == -2:
            pending = [int(r) for r in answer[1:]]
            rows = db.session.execute(
                sa.select(ParticipantTotal.registration_id, ParticipantTotal.score, ParticipantTotal.reached_at,
                          ParticipantTotal.bib, ParticipantTotal.version)
                .where(ParticipantTotal.challenge_id == total.challenge_id,
                       ParticipantTotal.registration_id.in_(pending))).all()
            args = []
            for r in rows:
                args += [r.registration_id, r.version, member(r.registration_id, r.score, r.reached_at, r.bib)]
            if args:
                redis.register_script(_APPLY)(keys=[names["board"], names["members"], names["versions"]], args=args)
            answer = rank_script(keys=[names["ready"], names["pending"], names["board"]], args=[mine, "1"])
        if answer[0] == -1:
            # Not built yet (or lost with a Redis restart): this reader builds it, others use SQL meanwhile.
            if build_missing and build(tenant_id, total.challenge_id):
                return cached_rank(tenant_id, total, build_missing=False)
            return None
        if answer[0] < 0:
            return None  # this participant's own entry moved on since we read it: SQL answers
        return answer[0] + 1
    except RedisError as error:
        log.warning("leaderboard cache unavailable (%s): ranking with SQL", error)
        return None
