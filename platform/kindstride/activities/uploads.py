"""Importing uploaded files: each file (or each file inside a zip) gets its own outcome, and a bad
file never stops the good ones."""

import hashlib

import sqlalchemy as sa
from flask import current_app

from kindstride.activities.archive import unpack_upload
from kindstride.activities.models import Activity
from kindstride.activities.parsing import ActivityFileError, parse_activity
from kindstride.activities.services import add_activity
from kindstride.db import db

DEFAULT_MAX_FILE_BYTES = 25 * 1024 * 1024
# An outcome's status: a new activity, a file this person had uploaded before (its activity), or refused.
STORED, DUPLICATE, REFUSED = "stored", "duplicate", "refused"


def import_uploads(user, uploads):
    """uploads: [(filename, bytes)]. Returns [{"file", "activity_id", "error", "code", "status"}], one per
    file; each file is committed on its own."""
    return [import_member(user, member) for member in unpacked(uploads)]


def max_file_bytes():
    return current_app.config.get("MAX_ACTIVITY_FILE_BYTES", DEFAULT_MAX_FILE_BYTES)


def unpacked(uploads):
    """The files of the uploads, zips unpacked: [ArchiveMember], in order."""
    max_bytes = max_file_bytes()
    return [member for filename, data in uploads
            for member in unpack_upload(filename, data, max_member_bytes=max_bytes)]


def import_member(user, member):
    """Parse and store one file, and commit it: its outcome."""
    if member.error is not None:
        return _failed(member.filename, member.error)
    max_bytes = max_file_bytes()
    try:
        parsed = parse_activity(member.filename, member.data, max_bytes=max_bytes)
    except ActivityFileError as error:
        return _failed(member.filename, error)
    fingerprint = hashlib.sha256(member.data).hexdigest()
    known = db.session.scalar(sa.select(Activity.id).where(Activity.user_id == user.id,
                                                           Activity.fingerprint == fingerprint))
    # Each file in its own savepoint: one that fails to store leaves the others stored.
    with db.session.begin_nested():
        activity = add_activity(
            user, source=parsed.source, sport=parsed.sport, start=parsed.start, elapsed_s=parsed.elapsed_s,
            moving_s=parsed.moving_s, distance_m=parsed.distance_m, has_gps=parsed.has_gps,
            is_indoor=parsed.is_indoor, split_paces=list(parsed.split_paces_s_per_km), device=parsed.device,
            file_name=member.filename[:255], fingerprint=fingerprint,
        )
    activity_id = activity.id
    db.session.commit()
    return {"file": member.filename, "activity_id": activity_id, "error": None, "code": None,
            "status": DUPLICATE if known is not None else STORED}


def _failed(filename, error):
    return {"file": filename, "activity_id": None, "error": error.message, "code": error.code, "status": REFUSED}
