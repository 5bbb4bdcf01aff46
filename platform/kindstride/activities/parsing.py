"""Reading one uploaded activity file (FIT, GPX or TCX, optionally gzipped) into plain facts.

Pure: bytes in, a ParsedActivity or an ActivityFileError out; no database, no network, no Flask.
The format is recognised by content: FIT by ".FIT" at byte 8, GPX and TCX by the XML root element
(<gpx>, <TrainingCenterDatabase>), gzip by its magic bytes (Strava's bulk export writes "x.fit.gz").
The name's extension only shapes the error message. XML is read with defusedxml, refusing any DTD.

Where each number comes from
----------------------------
=========== ================================ ==================================== ==============================
field       FIT                              TCX                                  GPX
=========== ================================ ==================================== ==============================
start       session start_time               earliest Lap StartTime               earliest point time
elapsed_s   session total_elapsed_time       to the later of the last point and   latest point - earliest point
                                             the last lap's end
moving_s    session total_timer_time         sum of Lap TotalTimeSeconds          computed from the points
distance_m  session total_distance           sum of Lap DistanceMeters            haversine within each trkseg
splits      record distance, less the time   trackpoint DistanceMeters (else      haversine within each trkseg
            the timer was stopped            haversine), a new Track is a pause
source      "device" when the manufacturer   "device" for a Device_t Creator      "device" when the creator
            is a watch or bike computer      with a product id > 0 (apps write    names a watch or bike computer
            maker (Garmin, Suunto, Wahoo,    0) or a known maker; else "app"      maker ("Garmin Connect");
            Polar, Coros...); else "app"     (Fitbit, "FITNESS", no Creator)      else "app" (StravaGPX, My Tracks)
is_indoor   sub-sport treadmill, indoor_*,   False (not stated)                   False (not stated)
            spin, virtual_activity...
=========== ================================ ==================================== ==============================

When a file lacks a total (no FIT session, a lap without DistanceMeters), the value computed from the
points is used. Moving time computed from points (GPX, and the splits of every format): an interval
between consecutive points counts unless the device timer was stopped, it crosses a segment break, or it
lasts over 30 s at under 0.5 m/s (a stop; a faster long gap is a GPS dropout while moving, and counts).
Points without a time are skipped. A position of exactly 0,0 (a device without a fix) or one that cannot
be read (an exporter writing "undefined") counts as no position rather than sinking the file.

Refusals (ActivityFileError.code)
---------------------------------
======================== ==========================================================================
code                     when
======================== ==========================================================================
empty_file               zero bytes, also once gunzipped
too_large                over max_bytes, before or once gunzipped (inflated with a cap, never whole)
unknown_format           not FIT, GPX or TCX by content (a zip handed in as one file, a gzip in a gzip)
corrupt_file             FIT checksum, definition or truncation errors, refused rather than read
                         leniently, since a half-read file's totals are not the activity's (the Strava
                         Android file: "local message 11 not defined"); malformed or cut XML or gzip;
                         unreadable numbers or times
xml_entities_forbidden   a GPX or TCX declaring a DOCTYPE (billion laughs, XXE), before any expansion
not_an_activity          a FIT file of another type (course, settings), a TCX without an Activity
unsupported_multisport   several FIT sessions (the fr920xt triathlon) or several TCX activities: the
                         message lists the legs so the participant uploads each on its own; a sum
                         would count a swim and a ride as a run
no_track                 a GPX without track points, a TCX with laps but no trackpoints
no_timestamps            no point has a time; a FIT whose times count from the device's power-on
                         (the fr70 file: session start_time < 0x10000000), so the date is unknown
bogus_timestamps         a start before 1990, or several points all at one instant (GPSBabel's 1901)
no_distance              neither a distance nor a position. A real zero (the Edge 800 indoor trainer
                         ride) is returned as 0 m: whether it counts is for the rules
inconsistent_totals      timer time beyond the elapsed time (the Fitbit TCX whose two laps cover the
                         same 2283 s: 4566 s of laps and a doubled distance)
======================== ==========================================================================
Archives add empty_archive, too_many_files, zip_bomb, nested_archive and encrypted_file (see archive.py).
"""

import gzip
import io
import zlib
from datetime import UTC, datetime
from pathlib import PurePosixPath

from kindstride.activities.formats.base import (
    ActivityFileError,
    ParsedActivity,
    describe_size,
    local_name,
    xml_events,
)
from kindstride.activities.formats.fit import read_fit
from kindstride.activities.formats.gpx import read_gpx
from kindstride.activities.formats.tcx import read_tcx

__all__ = ["ActivityFileError", "ParsedActivity", "parse_activity", "safe_basename"]

MAX_FILE_BYTES = 25 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry; the end record of an empty zip
# No sports watch or phone app recorded before this: an earlier start is a device's unset clock.
EARLIEST_PLAUSIBLE_START = datetime(1990, 1, 1, tzinfo=UTC)


def parse_activity(filename: str, data: bytes, *, max_bytes: int = MAX_FILE_BYTES) -> ParsedActivity:
    """The activity in one uploaded file; raises ActivityFileError with a code and a sentence naming the file."""
    name = safe_basename(filename)
    if data.startswith(GZIP_MAGIC):
        data = _gunzip(name, data, max_bytes)
    _check_size(name, data, max_bytes)
    try:
        activity = _read(name, data)
    except ActivityFileError:
        raise
    except (ValueError, OverflowError) as error:  # an unreadable number or time deep inside the file
        raise ActivityFileError("corrupt_file", name, f"the file is corrupt ({error})") from error
    _check_plausible(name, activity)
    return activity


def safe_basename(filename: str) -> str:
    """The name without any folder (either slash), printable characters only, for messages and storage."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    return "".join(character for character in name if character.isprintable())[:255] or "upload"


def _read(name: str, data: bytes) -> ParsedActivity:
    if len(data) >= 12 and data[8:12] == b".FIT":
        return read_fit(name, data)
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        events = xml_events(name, data)
        _, root = next(events)
        if local_name(root.tag) == "gpx":
            return read_gpx(name, root, events)
        if local_name(root.tag) == "TrainingCenterDatabase":
            return read_tcx(name, root, events)
        raise ActivityFileError(
            "unknown_format", name, f"the XML document is <{local_name(root.tag)}>, neither GPX nor TCX"
        )
    if data.startswith(ZIP_MAGICS):
        raise ActivityFileError("unknown_format", name, "this is a zip archive, not a single activity file")
    extension = PurePosixPath(name.lower().removesuffix(".gz")).suffix
    if extension == ".fit":
        problem = "the file is not a FIT file (it has no FIT header)"
    elif extension in (".gpx", ".tcx"):
        problem = f"the file is not XML, so it cannot be {extension[1:].upper()}"
    else:
        problem = "the file is not a FIT, GPX or TCX activity file"
    raise ActivityFileError("unknown_format", name, problem)


def _gunzip(name: str, data: bytes, max_bytes: int) -> bytes:
    _check_size(name, data, max_bytes)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            inflated = stream.read(max_bytes + 1)  # inflates at most this much, whatever the header says
    except (OSError, EOFError, zlib.error) as error:
        raise ActivityFileError("corrupt_file", name, "the gzip compression is damaged or cut short") from error
    if len(inflated) > max_bytes:
        raise ActivityFileError("too_large", name, f"the file is larger than {describe_size(max_bytes)} once unpacked")
    return inflated


def _check_size(name: str, data: bytes, max_bytes: int) -> None:
    if not data:
        raise ActivityFileError("empty_file", name, "the file is empty")
    if len(data) > max_bytes:
        raise ActivityFileError("too_large", name, f"the file is larger than {describe_size(max_bytes)}")


def _check_plausible(name: str, activity: ParsedActivity) -> None:
    if activity.start < EARLIEST_PLAUSIBLE_START:
        raise ActivityFileError(
            "bogus_timestamps", name,
            f"the times say {activity.start:%Y-%m-%d}, so the recording device's clock was not set",
        )
    if activity.points > 1 and activity.elapsed_s <= 0:
        raise ActivityFileError(
            "bogus_timestamps", name, f"all {activity.points} points carry the same time, so the duration is unknown"
        )
    if activity.moving_s > activity.elapsed_s * 1.01 + 2:
        raise ActivityFileError(
            "inconsistent_totals", name,
            f"the file's timer time ({activity.moving_s:.0f} s) is longer than the activity itself "
            f"({activity.elapsed_s:.0f} s); its laps are inconsistent",
        )
