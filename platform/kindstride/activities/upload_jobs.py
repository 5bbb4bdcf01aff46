"""Long uploads in the background: a zip of hundreds of activity files is imported by a job, file by file,
while the participant watches a progress bar (kindstride.web.progress) and then reads one outcome per file.

`start()` keeps the uploaded bytes (the zips as sent, not unpacked) in a spool under an unguessable id, writes
a queued progress record that names the uploader, and queues `import_upload` for after the commit. The job
unpacks the upload as the synchronous path does, imports each file in its own transaction (a bad file is a
refusal, never a half-written import) and adds each file's outcome to the record once it is committed; a
retried job goes on after the files the record already has. When every file is done the spool is dropped.

Where the bytes wait: in Redis, under a key that carries the tenant, when there is Redis (the rq worker is
another process, maybe on another machine), else in this process's memory (jobs then run in-process, right
after the request's commit). Redis is the one store that the web processes and every worker already share in
each deployment (compose and Kubernetes give each container its own instance folder, so a file there would not
reach a worker on another host); the cost is memory, at most MAX_CONTENT_LENGTH per upload waiting, freed when
its job ends and expiring with its progress record after a day. A deployment that takes many large uploads at
once would move the spool to object storage or a tenant-scoped table: only save/load/drop below know where it is.
"""

import contextlib
import json
import re
import secrets
import threading

from redis import RedisError

from kindstride.accounts.models import User
from kindstride.activities.archive import count_files
from kindstride.activities.uploads import DUPLICATE, REFUSED, STORED, import_member, unpacked
from kindstride.db import db
from kindstride.jobs import enqueue
from kindstride.jobs.queue import redis_or_none
from kindstride.tenancy.scope import current_tenant_id
from kindstride.web import progress

UPLOAD = "upload"  # the name of its progress records
BACKGROUND_FILES = 20  # an upload of more files than this (zip members counted) is imported by a job
UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)
_spooled: dict[str, list] = {}
_spooled_lock = threading.Lock()


def is_long(uploads) -> bool:
    """Whether an upload ([(filename, bytes)]) has too many files to import inside the request."""
    return sum(count_files(filename, data) for filename, data in uploads) > BACKGROUND_FILES


def start(user, uploads) -> str:
    """Keep the upload and queue its import for after the commit; returns the upload's id."""
    upload_id = secrets.token_urlsafe(16)
    save(upload_id, uploads)
    progress.queued(UPLOAD, upload_id, None, user_id=user.id)
    enqueue(import_upload, upload_id, user.id)
    return upload_id


def record_of(upload_id, user):
    """The upload's progress record, or None unless `user` made it (a page then says 404)."""
    if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
        return None
    record = progress.read(UPLOAD, upload_id)
    return record if record is not None and record.get("user_id") == user.id else None


def counts(items):
    return {status: sum(1 for item in items if item.get("status") == status) for status in (STORED, DUPLICATE,
                                                                                             REFUSED)}


def import_upload(upload_id, user_id):
    """A tenant job: import a spooled upload file by file, each file's outcome added to its progress record."""
    record = progress.read(UPLOAD, upload_id)
    if record is None or record["state"] == progress.DONE:
        return  # expired, or done already (rq ran the job again)
    user = db.session.get(User, user_id)
    uploads = load(upload_id)
    if user is None or uploads is None:
        # The bytes are gone (expired, or kept where this worker cannot read them): say so, do not retry.
        progress.track(db.session(), UPLOAD, upload_id, None, record.get("total") or 0, until_commit=False,
                       done=record.get("done") or 0, user_id=user_id, lost=True).finish(progress.FAILED)
        return
    members = unpacked(uploads)
    done = len(record["items"])  # a retried job goes on after the files it has done
    tracker = progress.track(db.session(), UPLOAD, upload_id, None, len(members), until_commit=False, done=done,
                             user_id=user_id)
    try:
        for member in members[done:]:
            tracker.step(result=import_member(user, member))  # committed before its outcome is written
    except Exception:
        db.session.rollback()
        tracker.finish(progress.FAILED)  # rq tries again later, after the files done so far
        raise
    tracker.finish(progress.DONE)
    drop(upload_id)


# ------------------------------------------------------------------------------------------------ the spool

def _spool_key(upload_id):
    return f"kindstride:upload-spool:tenant-{current_tenant_id()}:{upload_id}"


def save(upload_id, uploads):
    name = _spool_key(upload_id)
    redis = redis_or_none()
    if redis is not None:
        try:
            pipe = redis.pipeline()
            pipe.hset(name, mapping={"names": json.dumps([filename for filename, _data in uploads]),
                                     **{str(index): data for index, (_name, data) in enumerate(uploads)}})
            pipe.expire(name, progress.TTL_S)
            pipe.execute()
            return
        except RedisError:
            pass  # Redis unreachable: the job runs in-process (kindstride.jobs.queue), so memory will do
    with _spooled_lock:
        _spooled[name] = list(uploads)


def load(upload_id):
    """The upload as [(filename, bytes)], or None when it is not (or no longer) kept."""
    name = _spool_key(upload_id)
    redis = redis_or_none()
    if redis is not None:
        try:
            stored = redis.hgetall(name)
            if stored:
                names = json.loads(stored[b"names"])
                return [(filename, stored[str(index).encode()]) for index, filename in enumerate(names)]
        except (RedisError, KeyError, ValueError):
            pass
    with _spooled_lock:
        return _spooled.get(name)


def drop(upload_id):
    name = _spool_key(upload_id)
    redis = redis_or_none()
    if redis is not None:
        with contextlib.suppress(RedisError):  # else it expires
            redis.delete(name)
    with _spooled_lock:
        _spooled.pop(name, None)
