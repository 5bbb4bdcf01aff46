"""Importing uploaded files: each file (or each file inside a zip) gets its own outcome, and a bad
file never stops the good ones."""

import hashlib

from flask import current_app

from kindstride.activities.archive import unpack_upload
from kindstride.activities.parsing import ActivityFileError, parse_activity
from kindstride.activities.services import add_activity
from kindstride.db import db

DEFAULT_MAX_FILE_BYTES = 25 * 1024 * 1024


def import_uploads(user, uploads):
    """uploads: [(filename, bytes)]. Returns [{"file", "activity_id", "error", "code"}], one per file."""
    max_bytes = current_app.config.get("MAX_ACTIVITY_FILE_BYTES", DEFAULT_MAX_FILE_BYTES)
    outcomes = []
    for filename, data in uploads:
        for member in unpack_upload(filename, data, max_member_bytes=max_bytes):
            outcomes.append(_import_one(user, member, max_bytes))
    return outcomes


def _import_one(user, member, max_bytes):
    if member.error is not None:
        return _failed(member.filename, member.error)
    try:
        parsed = parse_activity(member.filename, member.data, max_bytes=max_bytes)
    except ActivityFileError as error:
        return _failed(member.filename, error)
    # Each file in its own savepoint: one that fails to store leaves the others stored.
    with db.session.begin_nested():
        activity = add_activity(
            user, source=parsed.source, sport=parsed.sport, start=parsed.start, elapsed_s=parsed.elapsed_s,
            moving_s=parsed.moving_s, distance_m=parsed.distance_m, has_gps=parsed.has_gps,
            is_indoor=parsed.is_indoor, split_paces=list(parsed.split_paces_s_per_km), device=parsed.device,
            file_name=member.filename[:255], fingerprint=hashlib.sha256(member.data).hexdigest(),
        )
    db.session.commit()
    return {"file": member.filename, "activity_id": activity.id, "error": None, "code": None}


def _failed(filename, error):
    return {"file": filename, "activity_id": None, "error": error.message, "code": error.code}
