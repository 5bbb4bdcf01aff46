"""What the format readers share: the result and error types, safe XML reading, sport and source
normalisation, and the track arithmetic (distance, moving time, kilometre splits)."""

import io
import math
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse

EARTH_RADIUS_M = 6_371_008.8  # the mean Earth radius (IUGG)
# A gap between two points longer than STOP_GAP_S, covered at under STOP_SPEED_M_S, is a stop. A long gap
# covered faster is a GPS dropout while moving: its time counts, because its distance counts too.
STOP_GAP_S = 30.0
STOP_SPEED_M_S = 0.5

# Most specific name first: a FIT sub-sport ("treadmill") settles what a generic sport leaves open.
_SPORTS = {
    "run": "run", "running": "run", "trail_running": "run", "treadmill": "run", "indoor_running": "run",
    "walk": "walk", "walking": "walk", "indoor_walking": "walk",
    "ride": "ride", "cycling": "ride", "biking": "ride", "bike": "ride", "road_biking": "ride",
    "mountain_biking": "ride", "indoor_cycling": "ride", "spin": "ride",
    "hike": "hike", "hiking": "hike",
    "swim": "swim", "swimming": "swim",
    "wheelchair": "wheelchair", "wheelchair_push_run": "wheelchair", "wheelchair_push_walk": "wheelchair",
    "indoor_wheelchair_run": "wheelchair", "indoor_wheelchair_walk": "wheelchair",
}
# Makers of watches and bike computers, as they appear in FIT manufacturer names and GPX/TCX creators.
_DEVICE_MAKERS = (
    "garmin", "suunto", "polar", "wahoo", "coros", "tomtom", "bryton", "hammerhead", "sigma", "lezyne",
    "stages", "magellan", "timex", "dynastream",
)


class ActivityFileError(ValueError):
    """An uploaded file that cannot become an activity: `code` for machines, `message` for people."""

    def __init__(self, code: str, filename: str, problem: str):
        self.code = code
        self.filename = filename
        self.message = f"{filename}: {problem}"
        super().__init__(self.message)


@dataclass(frozen=True)
class ParsedActivity:
    format: str  # "fit" | "gpx" | "tcx"
    sport: str  # one of kindstride.rules.contract.SPORTS
    raw_sport: str | None  # what the file said
    start: datetime  # UTC
    elapsed_s: float  # wall-clock duration, pauses included
    moving_s: float  # device timer, or moving time computed from the points
    distance_m: float  # device total, or computed from the points
    has_gps: bool
    is_indoor: bool
    source: str  # "device" or "app"
    device: str | None
    split_paces_s_per_km: tuple[float, ...]  # moving seconds of each complete kilometre
    points: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One recorded point: its time, and its position and/or the device's cumulative distance if recorded."""

    time: float  # POSIX seconds
    lat: float | None = None
    lon: float | None = None
    distance_m: float | None = None
    new_segment: bool = False  # the file marks a break before this point (GPX trkseg, TCX Track)

    @property
    def has_position(self) -> bool:
        # 0,0 is what devices write when they have no fix
        return self.lat is not None and self.lon is not None and (self.lat, self.lon) != (0.0, 0.0)


@dataclass(frozen=True)
class Track:
    """What the points say, whatever the file's own totals say."""

    start: float  # POSIX seconds, earliest point
    end: float  # POSIX seconds, latest point
    distance_m: float | None  # None when no point has a distance or a position
    moving_s: float
    split_paces_s_per_km: tuple[float, ...]
    has_gps: bool


def summarise(samples: Sequence[Sample], timer_stops: Sequence[tuple[float, float]] = ()) -> Track:
    """Distance, moving time and kilometre splits of a non-empty series of points.

    The distance stream is the device's cumulative distance when any point has one, else the haversine
    distance between consecutive positions, never bridging a segment break. An interval between two
    points counts as moving time, less any time the device timer was stopped (`timer_stops`), unless it
    crosses a segment break or is a stop (see STOP_GAP_S). A kilometre boundary's moving time is
    interpolated linearly inside the interval that crosses it.
    """
    use_device_distance = any(sample.distance_m is not None for sample in samples)
    stopped = _StoppedTimer(timer_stops)
    splits: list[float] = []
    previous: Sample | None = None
    distance = moving = moving_at_last_km = 0.0
    next_km_m = 1000.0
    break_pending = False
    for sample in samples:
        break_pending = break_pending or sample.new_segment
        if not (sample.distance_m is not None if use_device_distance else sample.has_position):
            continue
        if previous is None:
            distance = sample.distance_m if use_device_distance else 0.0
            next_km_m = (math.floor(distance / 1000) + 1) * 1000
        else:
            if use_device_distance:
                step_m = max(0.0, sample.distance_m - distance)
            else:
                step_m = 0.0 if break_pending else haversine_m(previous, sample)
            elapsed = sample.time - previous.time
            step_s = elapsed - stopped.during(previous.time, sample.time) if elapsed > 0 else 0.0
            if break_pending or (step_s > STOP_GAP_S and step_m < STOP_SPEED_M_S * step_s):
                step_s = 0.0
            while distance + step_m >= next_km_m:
                crossed_at = moving + step_s * (next_km_m - distance) / step_m
                splits.append(crossed_at - moving_at_last_km)
                moving_at_last_km = crossed_at
                next_km_m += 1000
            distance += step_m
            moving += step_s
        previous = sample
        break_pending = False
    times = [sample.time for sample in samples]
    return Track(
        start=min(times),
        end=max(times),
        distance_m=distance if previous is not None else None,
        moving_s=moving,
        split_paces_s_per_km=tuple(splits),
        has_gps=any(sample.has_position for sample in samples),
    )


class _StoppedTimer:
    """How long the device timer was stopped during an interval."""

    def __init__(self, stops: Sequence[tuple[float, float]]):
        self._stops = sorted(stops)
        self._ends = [end for _, end in self._stops]

    def during(self, start: float, end: float) -> float:
        total = 0.0
        for stop_start, stop_end in self._stops[bisect_right(self._ends, start):]:
            if stop_start >= end:
                break
            total += min(end, stop_end) - max(start, stop_start)
        return total


def haversine_m(a: Sample, b: Sample) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def normalise_sport(*names: str | None) -> str:
    """The kindstride sport of the first name that means one (most specific first), else "other"."""
    for name in names:
        if name is not None:
            sport = _SPORTS.get(name.strip().lower().replace(" ", "_").replace("-", "_"))
            if sport:
                return sport
    return "other"


def names_device_maker(text: str | None) -> bool:
    return text is not None and any(maker in text.lower() for maker in _DEVICE_MAKERS)


def xml_events(filename: str, data: bytes) -> Iterator[tuple[str, Element]]:
    """The start and end events of an XML document, refusing any DTD, hence entity expansion and XXE."""
    try:
        yield from iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True)
    except DefusedXmlException as error:
        raise ActivityFileError(
            "xml_entities_forbidden", filename,
            "XML files that declare a document type or entities are not accepted",
        ) from error
    except ParseError as error:
        line, column = error.position
        raise ActivityFileError(
            "corrupt_file", filename, f"the XML is malformed or cut short (line {line}, column {column})"
        ) from error
    except LookupError as error:  # the XML declaration names an encoding Python does not know
        raise ActivityFileError("corrupt_file", filename, f"the XML declares an unknown encoding ({error})") from error


def describe_size(size: int) -> str:
    return f"{size / 2**20:g} MB" if size >= 2**20 else f"{size} bytes"


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_time(text: str) -> float:
    """POSIX seconds of an ISO 8601 time; a time without a zone is UTC, as GPX and TCX specify."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"unreadable time {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"unreadable number {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"unreadable number {text!r}")
    return value


def parse_position(lat: str | None, lon: str | None) -> tuple[float, float] | tuple[None, None]:
    """Degrees, or no position when either is missing, unreadable or out of range (some exporters write
    "undefined"): a bad fix should not sink an otherwise good recording."""
    try:
        lat_deg, lon_deg = float(lat), float(lon)
    except (TypeError, ValueError):
        return None, None
    if abs(lat_deg) <= 90 and abs(lon_deg) <= 180:  # also false for NaN
        return lat_deg, lon_deg
    return None, None
