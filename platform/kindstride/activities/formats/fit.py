"""FIT activity files (Garmin's binary format, written by most watches, bike computers and many apps).

Decoded strictly with fitdecode (checksums and message definitions checked), chained FIT files included.
The session message carries the device's totals; the record messages give positions and the distance
stream, and the timer events give the pauses to leave out of kilometre splits.
"""

import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import fitdecode

from kindstride.activities.formats.base import (
    ActivityFileError,
    ParsedActivity,
    Sample,
    names_device_maker,
    normalise_sport,
    summarise,
)

_DEGREES_PER_SEMICIRCLE = 180 / 2**31
_TIMER_STOPS = {"stop", "stop_all", "stop_disable", "stop_disable_all"}
# Recorded on a machine or in a virtual world: the distance comes from a sensor, not from the road.
_INDOOR_SUB_SPORTS = {
    "treadmill", "indoor_running", "indoor_walking", "indoor_cycling", "spin", "indoor_rowing", "indoor_skiing",
    "elliptical", "stair_climbing", "virtual_activity", "indoor_wheelchair_walk", "indoor_wheelchair_run",
    "indoor_hand_cycling",
}


@dataclass(frozen=True)
class _Session:
    sport: str | None = None
    sub_sport: str | None = None
    start_time: datetime | int | None = None  # an int is a time relative to the device's power-on, not a date
    elapsed_s: float | None = None
    timer_s: float | None = None
    distance_m: float | None = None

    @property
    def raw_sport(self) -> str | None:
        if self.sub_sport in (None, "generic"):
            return self.sport
        return f"{self.sport}/{self.sub_sport}"


@dataclass
class _FitContents:
    file_type: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    product_name: str | None = None
    sessions: list[_Session] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    timer_stops: list[tuple[float, float]] = field(default_factory=list)
    records: int = 0


def read_fit(filename: str, data: bytes) -> ParsedActivity:
    fit = _decode(filename, data)
    if fit.file_type not in (None, "activity"):
        raise ActivityFileError(
            "not_an_activity", filename, f"this is a FIT {fit.file_type} file, not a recorded activity"
        )
    if len(fit.sessions) > 1:
        legs = ", ".join(session.raw_sport or "unknown sport" for session in fit.sessions)
        raise ActivityFileError(
            "unsupported_multisport", filename,
            f"the file holds a multisport activity with {len(fit.sessions)} legs ({legs}); "
            "upload each leg as its own activity",
        )
    session = fit.sessions[0] if fit.sessions else _Session()
    if isinstance(session.start_time, int):
        raise ActivityFileError(
            "no_timestamps", filename,
            "the device recorded only the time since it was switched on, not the date and time of the activity",
        )
    if not fit.samples and (session.start_time is None or session.elapsed_s is None):
        raise ActivityFileError("no_timestamps", filename, "the file records no date and time for the activity")
    track = summarise(fit.samples, fit.timer_stops) if fit.samples else None
    # Without records, the session alone must say when and how long (checked above).
    start = session.start_time.timestamp() if session.start_time else track.start
    elapsed = session.elapsed_s if session.elapsed_s is not None else track.end - start
    moving = session.timer_s if session.timer_s is not None else track.moving_s if track else elapsed
    distance = session.distance_m if session.distance_m is not None else track.distance_m if track else None
    if distance is None:
        raise ActivityFileError("no_distance", filename, "the file records neither a distance nor positions")
    return ParsedActivity(
        format="fit",
        sport=normalise_sport(session.sub_sport, session.sport),
        raw_sport=session.raw_sport,
        start=datetime.fromtimestamp(start, UTC),
        elapsed_s=elapsed,
        moving_s=moving,
        distance_m=distance,
        has_gps=bool(track and track.has_gps),
        is_indoor=session.sub_sport in _INDOOR_SUB_SPORTS or session.sport == "fitness_equipment",
        source="device" if names_device_maker(fit.manufacturer) else "app",
        device=_device_label(fit),
        split_paces_s_per_km=track.split_paces_s_per_km if track else (),
        points=fit.records,
    )


def _decode(filename: str, data: bytes) -> _FitContents:
    fit = _FitContents()
    stopped_at = None
    for frame in _data_messages(filename, data):
        if frame.name == "record":
            fit.records += 1
            sample = _sample(frame)
            if sample:
                fit.samples.append(sample)
        elif frame.name == "event" and _value(frame, "event") == "timer":
            moment = _value(frame, "timestamp")
            if not isinstance(moment, datetime):
                continue
            if _value(frame, "event_type") in _TIMER_STOPS:
                stopped_at = stopped_at or moment.timestamp()
            elif _value(frame, "event_type") == "start" and stopped_at is not None:
                fit.timer_stops.append((stopped_at, moment.timestamp()))
                stopped_at = None
        elif frame.name == "session":
            fit.sessions.append(_Session(
                sport=_name(_value(frame, "sport")),
                sub_sport=_name(_value(frame, "sub_sport")),
                start_time=_time(frame, "start_time"),
                elapsed_s=_number(frame, "total_elapsed_time"),
                timer_s=_number(frame, "total_timer_time"),
                distance_m=_number(frame, "total_distance"),
            ))
        elif frame.name == "file_id" and fit.file_type is None:
            fit.file_type = _name(_value(frame, "type"))
            fit.manufacturer = _name(_value(frame, "manufacturer"))
            fit.product = _name(_value(frame, "garmin_product") or _value(frame, "product"))
            fit.product_name = _name(_value(frame, "product_name"))
    return fit


def _data_messages(filename: str, data: bytes) -> Iterator[fitdecode.FitDataMessage]:
    try:
        with fitdecode.FitReader(
            io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE, error_handling=fitdecode.ErrorHandling.RAISE
        ) as reader:
            for frame in reader:
                if frame.frame_type == fitdecode.FIT_FRAME_DATA:
                    yield frame
    except fitdecode.FitError as error:
        problem = f"the file is truncated or corrupt ({_describe(error)})"
        raise ActivityFileError("corrupt_file", filename, problem) from error
    except Exception as error:  # fitdecode is strict but not hardened: mangled bytes also raise KeyError etc.
        raise ActivityFileError("corrupt_file", filename, "the file is corrupt (undecodable FIT data)") from error


def _sample(record: fitdecode.FitDataMessage) -> Sample | None:
    moment = _value(record, "timestamp")
    if not isinstance(moment, datetime):  # absent, or relative to the device's power-on
        return None
    lat, lon = _number(record, "position_lat"), _number(record, "position_long")
    has_position = lat is not None and lon is not None
    return Sample(
        moment.timestamp(),
        lat=lat * _DEGREES_PER_SEMICIRCLE if has_position else None,
        lon=lon * _DEGREES_PER_SEMICIRCLE if has_position else None,
        distance_m=_number(record, "distance"),
    )


def _value(frame: fitdecode.FitDataMessage, field_name: str):
    return frame.get_value(field_name, fallback=None)


def _time(frame: fitdecode.FitDataMessage, field_name: str) -> datetime | int | None:
    """A date_time field: a UTC datetime, or an int counting seconds from the device's power-on."""
    value = _value(frame, field_name)
    return value if isinstance(value, datetime | int) and not isinstance(value, bool) else None


def _number(frame: fitdecode.FitDataMessage, field_name: str) -> float | None:
    """A numeric field, or None when absent, invalid, or not a single number (a mangled definition)."""
    value = _value(frame, field_name)
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if is_number else None


def _name(value) -> str | None:
    """An enum value by its profile name; a number the profile does not know stays a number, as text."""
    return str(value) if isinstance(value, str | int) else None


def _describe(error: fitdecode.FitError) -> str:
    if isinstance(error, fitdecode.FitCRCError):
        return "checksum mismatch"
    if isinstance(error, fitdecode.FitEOFError):
        return f"the data ends early, at byte {error.offset}"
    if isinstance(error, fitdecode.FitParseError):
        return f"FIT parsing error at byte {error.offset}"
    return "invalid FIT header"


def _device_label(fit: _FitContents) -> str | None:
    """"Garmin Forerunner 220" from manufacturer "garmin" and product "fr220"; a product name wins."""
    if fit.product_name:
        return fit.product_name
    if fit.manufacturer is None or fit.manufacturer.isdigit():
        return None
    maker = fit.manufacturer.replace("_", " ").title()
    if fit.product is None or fit.product.isdigit():
        return maker
    words = re.sub(r"(?<=[a-z])(?=\d)", " ", re.sub(r"^fr(?=\d)", "forerunner", fit.product)).replace("_", " ")
    return " ".join([maker, *(word.upper() if word[0].isdigit() else word.capitalize() for word in words.split())])
