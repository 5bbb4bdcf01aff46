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

Two read caches sit on top (both per tenant, both answered by one Redis script and no query):
- pages of the board as the API serves them (`kindstride:t<tenant>:page:<slug>:<variant>`), each stored with the
  challenge's *changes* counter read before it was computed. The counter is bumped when a total is marked
  pending and again after the commit pushes it, when a bulk import invalidates the set, and after a commit that
  changed a registration, a team or the challenge (names, teams, slugs shown on the board); a page is served
  only while the counter still matches and nothing is pending, so it is never older than the totals. Pages also
  expire after PAGE_SECONDS, for changes made by plain SQL.
- each caller's registration in a challenge (`kindstride:t<tenant>:regs`: slug and user -> challenge,
  registration, bib), so "my rank" is the set's ZRANK of the member it holds for that registration; any
  committed change to the tenant's registrations, teams or challenges empties it (a counter guards against a
  reader storing what it read before that change).
"""

import logging
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from redis import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from kindstride.db import db
from kindstride.jobs.queue import redis_or_none

log = logging.getLogger(__name__)
_MARKS = "kindstride.board_marks"  # session.info: {(tenant, challenge): {registration id: marks}}
_PUSH = "kindstride.board_push"  # session.info: {(tenant, challenge): {registration: (version, member)}}
_REREAD = "kindstride.board_reread"  # session.info: a savepoint rolled back since totals were marked
_NAMES = "kindstride.board_names"  # session.info: {tenant: {challenge ids}} whose names or registrations changed
MAX_SCORE = 2**62
BUILD_BATCH = 3000  # a batch's ZADD takes 2 arguments per member: Lua's unpack() stops near 8,000
PAGE_SECONDS = 60

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
# _APPLY for a build's batch (ARGV: "version member" lines; each registration once, its id ends the member): the
# same version check, but one command per key for the whole batch (a build sends every participant).
_BUILD_APPLY = """
local regs, versions, members = {}, {}, {}
for version, member, reg in string.gmatch(ARGV[1], '(%d+) ([^\\n]-:(%d+))\\n') do
  regs[#regs + 1] = reg
  versions[#regs] = version
  members[#regs] = member
end
if #regs == 0 then return 0 end
local current = redis.call('HMGET', KEYS[3], unpack(regs))
local board, names, numbers, n = {}, {}, {}, 0
for i = 1, #regs do
  if not current[i] or tonumber(versions[i]) > tonumber(current[i]) then
    if current[i] then
      local old = redis.call('HGET', KEYS[2], regs[i])
      if old then redis.call('ZREM', KEYS[1], old) end
    end
    board[2 * n + 1], names[2 * n + 1], numbers[2 * n + 1] = 0, regs[i], regs[i]
    board[2 * n + 2], names[2 * n + 2], numbers[2 * n + 2] = members[i], members[i], versions[i]
    n = n + 1
  end
end
if n > 0 then
  redis.call('ZADD', KEYS[1], unpack(board))
  redis.call('HSET', KEYS[2], unpack(names))
  redis.call('HSET', KEYS[3], unpack(numbers))
end
return n
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
redis.call('INCR', KEYS[5])
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
            "building": f"{prefix}:building", "changes": f"{prefix}:changes"}


def member(registration_id, score, reached_at, bib):
    """The sort key: score descending, then reached_at ascending (none last), then bib; fixed-width hex."""
    reached = "f" * 14 if reached_at is None else f"{_micros(reached_at):014x}"
    return f"{MAX_SCORE - score:016x}{reached}{bib:08x}:{registration_id}"


def _micros(moment):
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


# -------------------------------------------------------------------------------------------------- writes


def mark_changed(total):
    """A participant total changed in this transaction (and is flushed): mark it pending now, push it after
    the commit."""
    mark_many_changed([total])


def mark_many_changed(totals):
    """mark_changed for many totals (rows or objects with their columns), in one round trip to Redis."""
    redis = redis_or_none()
    if redis is None or not totals:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for total in totals:
            names = keys(total.tenant_id, total.challenge_id)
            pipe.hincrby(names["pending"], total.registration_id, 1)
            pipe.incr(names["changes"])
        pipe.execute()
    except RedisError as error:
        log.warning("leaderboard cache: cannot mark a change (%s); readers may fall back to SQL", error)
        return
    for total in totals:
        key = (total.tenant_id, total.challenge_id)
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
        redis = redis_or_none()
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
            script(keys=[names["board"], names["members"], names["versions"], names["pending"], names["changes"]],
                   args=args)
        except RedisError as error:
            log.warning("leaderboard cache: cannot push committed totals (%s); they stay pending", error)


def invalidate(tenant_id, challenge_id):
    """A wholesale change (a bulk import): call before and after its commit, then build()."""
    redis = redis_or_none()
    if redis is None:
        return
    names = keys(tenant_id, challenge_id)
    try:
        pipe = redis.pipeline()
        pipe.incr(names["generation"])
        pipe.delete(names["ready"])
        pipe.incr(names["changes"])
        pipe.execute()
    except RedisError as error:
        log.warning("leaderboard cache: cannot invalidate (%s)", error)


def build(tenant_id, challenge_id):
    """Build the set from the database (in the tenant scope); it is declared ready unless invalidated meanwhile.
    Returns True when the set is ready; False when Redis fails meanwhile (SQL answers until a later build)."""
    redis = redis_or_none()
    if redis is None:
        return False
    try:
        return _build(redis, keys(tenant_id, challenge_id), challenge_id)
    except RedisError as error:  # e.g. after a bulk import committed: what is stored stands, the cache waits
        log.warning("leaderboard of challenge %s not built: %s", challenge_id, error)
        return False


def _build(redis, names, challenge_id):
    from kindstride.leaderboards.models import ParticipantTotal

    if not redis.set(names["building"], "1", nx=True, ex=300):
        return False  # another process is building it
    try:
        generation = redis.get(names["generation"]) or b"0"
        if not redis.exists(names["generation"]):
            redis.set(names["generation"], generation)
        redis.delete(names["ready"], names["board"], names["members"], names["versions"])
        totals = (sa.select(ParticipantTotal.registration_id, ParticipantTotal.score, ParticipantTotal.reached_at,
                            ParticipantTotal.bib, ParticipantTotal.version)
                  .where(ParticipantTotal.challenge_id == challenge_id).execution_options(yield_per=BUILD_BATCH))
        apply = redis.register_script(_BUILD_APPLY)
        board = [names["board"], names["members"], names["versions"]]
        # Redis applies one batch while the next is read and formatted here (waiting on its socket frees the GIL):
        # a 350,000-person board takes about a quarter less time.
        with db.session.execute(totals) as rows, ThreadPoolExecutor(max_workers=1) as sender:
            applying = None
            for batch in rows.partitions():
                lines = "".join([f"{version} {member(registration_id, score, reached_at, bib)}\n"
                                 for registration_id, score, reached_at, bib, version in batch])
                if applying is not None:
                    applying.result()
                applying = sender.submit(apply, keys=board, args=[lines])
            if applying is not None:
                applying.result()
        return bool(redis.register_script(_READY)(keys=[names["ready"], names["generation"]],
                                                  args=[generation]))
    finally:
        redis.delete(names["building"])


# --------------------------------------------------------------------------------------------------- reads


def cached_rank(tenant_id, total, build_missing=True):
    """The 1-based rank of a participant total on the unfiltered board, or None (then SQL answers)."""
    redis = redis_or_none()
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


# ------------------------------------------------------------------------------------ pages and my rank

# A stored page ("<challenge id>\n<changes>\n<body>") if the challenge's totals have not changed since.
_PAGE = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
local a = string.find(v, '\\n', 1, true)
local b = string.find(v, '\\n', a + 1, true)
local prefix = 'kindstride:t' .. ARGV[1] .. ':c' .. string.sub(v, 1, a - 1)
if redis.call('GET', prefix .. ':changes') ~= string.sub(v, a + 1, b - 1) then return false end
if redis.call('HLEN', prefix .. ':pending') > 0 then return false end
return string.sub(v, b + 1)
"""
# My rank: {rank, registration, member} | {-1 not ready | -2 pending | -3 not in the set, registration} | {-4}
# | {-5}: the caller's token generation (KEYS[2], ARGV[3]; none when empty) changed: the cache may not vouch
_MINE = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return {-5} end
local r = redis.call('HGET', KEYS[1], ARGV[2])
if not r then return {-4} end
local a = string.find(r, ':', 1, true)
local b = string.find(r, ':', a + 1, true)
local prefix = 'kindstride:t' .. ARGV[1] .. ':c' .. string.sub(r, 1, a - 1)
if redis.call('EXISTS', prefix .. ':ready') == 0 then return {-1, r} end
if redis.call('HLEN', prefix .. ':pending') > 0 then return {-2, r} end
local m = redis.call('HGET', prefix .. ':members', string.sub(r, a + 1, b - 1))
if not m then return {-3, r} end
local rank = redis.call('ZRANK', prefix .. ':board', m)
if not rank then return {-3, r} end
return {rank, r, m}
"""
# Remember a registration unless the tenant's registrations changed since the reader began.
_REMEMBER = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  return 1
end
return 0
"""


def _page_key(tenant_id, slug, variant):
    return f"kindstride:t{tenant_id}:page:{slug}:{variant}"


def _regs_keys(tenant_id):
    return f"kindstride:t{tenant_id}:regs", f"kindstride:t{tenant_id}:regs_changes"


def _counter(redis, key):
    """A counter's value; a missing one is created at a random value, so it never meets what an old entry
    remembers."""
    value = redis.get(key)
    if value is None:
        import random

        redis.set(key, random.getrandbits(48), nx=True)
        value = redis.get(key)
    return value


def cached_page(tenant_id, slug, variant):
    """The body of a board page stored while the totals were as they are now, or None."""
    redis = redis_or_none()
    if redis is None:
        return None
    try:
        return redis.register_script(_PAGE)(keys=[_page_key(tenant_id, slug, variant)], args=[tenant_id])
    except RedisError as error:
        log.warning("leaderboard page cache unavailable (%s)", error)
        return None


def page_token(tenant_id, challenge_id):
    """Read before computing a page: the changes counter it will be stored against, or None (do not store)."""
    redis = redis_or_none()
    if redis is None:
        return None
    names = keys(tenant_id, challenge_id)
    try:
        if redis.hlen(names["pending"]):
            return None
        return _counter(redis, names["changes"])
    except RedisError:
        return None


def store_page(tenant_id, challenge_id, slug, variant, token, body):
    redis = redis_or_none()
    if redis is None or token is None:
        return
    try:
        redis.set(_page_key(tenant_id, slug, variant), b"%d\n%s\n%s" % (challenge_id, token, body), ex=PAGE_SECONDS)
    except RedisError as error:
        log.warning("leaderboard page cache: cannot store (%s)", error)


def cached_my_rank(tenant_id, slug, user_id, still=None):
    """{"rank", "bib", "score"} of a user on a challenge's unfiltered board from Redis alone, or None. `still`:
    (key, value) that must still hold in Redis (the caller's token generation), checked in the same script."""
    redis = redis_or_none()
    if redis is None:
        return None
    regs, _changes = _regs_keys(tenant_id)
    key, value = still or (regs, b"")
    try:
        answer = redis.register_script(_MINE)(keys=[regs, key], args=[tenant_id, f"{slug}\n{user_id}", value])
    except RedisError as error:
        log.warning("leaderboard cache unavailable (%s): ranking with SQL", error)
        return None
    if answer[0] < 0:
        return None
    _challenge, _registration, bib = answer[1].split(b":")
    return {"rank": answer[0] + 1, "bib": int(bib), "score": MAX_SCORE - int(answer[2][:16], 16)}


def registrations_token(tenant_id):
    """Read before looking a registration up: the tenant's registrations counter, or None (do not remember)."""
    redis = redis_or_none()
    if redis is None:
        return None
    try:
        return _counter(redis, _regs_keys(tenant_id)[1])
    except RedisError:
        return None


def remember_registration(tenant_id, slug, user_id, registration, token):
    redis = redis_or_none()
    if redis is None or token is None:
        return
    regs, changes = _regs_keys(tenant_id)
    value = f"{registration.challenge_id}:{registration.id}:{registration.bib}"
    try:
        redis.register_script(_REMEMBER)(keys=[regs, changes], args=[token, f"{slug}\n{user_id}", value])
    except RedisError as error:
        log.warning("leaderboard cache: cannot remember a registration (%s)", error)


def _note_names(session, flush_context):
    """Registrations, teams and challenges changed: pages show their names, and "my rank" finds registrations
    through them."""
    from kindstride.challenges.models import Challenge, Registration, Team

    for obj in (*session.new, *session.dirty, *session.deleted):
        if obj in session.dirty and not session.is_modified(obj):
            continue  # an attribute set to the value it had (resolved_ruleset does so on every evaluation)
        if isinstance(obj, Registration | Team):
            session.info.setdefault(_NAMES, {}).setdefault(obj.tenant_id, set()).add(obj.challenge_id)
        elif isinstance(obj, Challenge):
            session.info.setdefault(_NAMES, {}).setdefault(obj.tenant_id, set()).add(obj.id)


event.listen(Session, "after_flush", _note_names)


def _note_bulk_names(state):
    from kindstride.challenges.models import Challenge, Registration, Team

    if (state.is_update or state.is_delete) and state.bind_mapper is not None \
            and state.bind_mapper.class_ in (Challenge, Registration, Team):
        from kindstride.tenancy.scope import current_tenant_id

        state.session.info.setdefault(_NAMES, {}).setdefault(current_tenant_id(), set()).add(None)


event.listen(Session, "do_orm_execute", _note_bulk_names)


@event.listens_for(Session, "after_commit")
def _names_changed(session):
    if session.in_nested_transaction():
        return
    changed = session.info.pop(_NAMES, None)
    if not changed:
        return
    try:
        redis = redis_or_none()
    except RuntimeError:
        return
    if redis is None:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for tenant_id, challenge_ids in changed.items():
            if tenant_id is None:
                continue
            regs, regs_changes = _regs_keys(tenant_id)
            pipe.incr(regs_changes)
            pipe.delete(regs)
            for challenge_id in challenge_ids:
                if challenge_id is None:  # a bulk statement: every page of the tenant goes
                    for key in redis.scan_iter(f"kindstride:t{tenant_id}:page:*"):
                        pipe.delete(key)
                else:
                    pipe.incr(keys(tenant_id, challenge_id)["changes"])
        pipe.execute()
    except RedisError as error:
        log.warning("leaderboard cache: cannot note changed names (%s); pages expire in %s s", error, PAGE_SECONDS)


@event.listens_for(Session, "after_rollback")
def _names_rolled_back(session):
    if not session.in_nested_transaction():
        session.info.pop(_NAMES, None)
