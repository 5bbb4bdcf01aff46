"""Garmin Training Center (TCX) v2 activities.

The laps carry the device's totals (timer time, distance); the trackpoints give the start-to-end span,
positions and the distance stream for kilometre splits. Each <Track> follows a timer pause.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from kindstride.activities.formats.base import (
    ActivityFileError,
    ParsedActivity,
    Sample,
    local_name,
    names_device_maker,
    normalise_sport,
    parse_number,
    parse_position,
    parse_time,
    summarise,
)

_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


@dataclass(frozen=True)
class _Lap:
    start: float
    timer_s: float | None
    distance_m: float | None


def read_tcx(filename: str, root: Element, events: Iterator[tuple[str, Element]]) -> ParsedActivity:
    """`root` is the <TrainingCenterDatabase> element just started; `events` the rest of the document."""
    ns = root.tag.removesuffix(local_name(root.tag))
    sports: list[str] = []
    laps: list[_Lap] = []
    samples: list[Sample] = []
    points = 0
    creator: Element | None = None
    segment_starts = False
    path = [root.tag]
    for event, element in events:
        if event == "start":
            path.append(element.tag)
            if element.tag == f"{ns}Activity":
                sports.append(element.get("Sport") or "Other")
            segment_starts = segment_starts or element.tag == f"{ns}Track"
            continue
        path.pop()
        parent = path[-1] if path else None
        if element.tag == f"{ns}Trackpoint" and f"{ns}Activity" in path:  # not a course's planned track
            points += 1
            time = element.findtext(f"{ns}Time")
            if time:  # a point without a time cannot be placed in the activity
                samples.append(_trackpoint(ns, element, parse_time(time), segment_starts))
                segment_starts = False
            element.clear()  # keep memory flat on long activities
        elif element.tag == f"{ns}Lap" and parent == f"{ns}Activity":
            laps.append(_Lap(
                start=parse_time(element.get("StartTime", "")),
                timer_s=_optional_number(element.findtext(f"{ns}TotalTimeSeconds")),
                distance_m=_optional_number(element.findtext(f"{ns}DistanceMeters")),
            ))
            element.clear()
        elif element.tag == f"{ns}Creator" and parent == f"{ns}Activity" and creator is None:
            creator = element
    if not sports:
        raise ActivityFileError("not_an_activity", filename, "the file holds no recorded activity (a course?)")
    if len(sports) > 1:
        raise ActivityFileError(
            "unsupported_multisport", filename,
            f"the file holds {len(sports)} activities ({', '.join(sports)}); upload each one as its own file",
        )
    if not points:
        raise ActivityFileError("no_track", filename, "the file holds lap totals but no recorded track points")
    if not samples:
        raise ActivityFileError(
            "no_timestamps", filename, "the track points carry no times, so the date and duration are unknown"
        )
    track = summarise(samples)
    start = min((lap.start for lap in laps), default=track.start)
    end = max([track.end, *(lap.start + lap.timer_s for lap in laps if lap.timer_s is not None)])
    lap_distances = [lap.distance_m for lap in laps if lap.distance_m is not None]
    distance = sum(lap_distances) if lap_distances else track.distance_m
    if distance is None:
        raise ActivityFileError("no_distance", filename, "the file records neither a distance nor positions")
    timer_known = bool(laps) and all(lap.timer_s is not None for lap in laps)
    source, device = _source_and_device(ns, creator)
    return ParsedActivity(
        format="tcx",
        sport=normalise_sport(sports[0]),
        raw_sport=sports[0],
        start=datetime.fromtimestamp(start, UTC),
        elapsed_s=end - start,
        moving_s=sum(lap.timer_s for lap in laps) if timer_known else track.moving_s,
        distance_m=distance,
        has_gps=track.has_gps,
        is_indoor=False,
        source=source,
        device=device,
        split_paces_s_per_km=track.split_paces_s_per_km,
        points=points,
    )


def _trackpoint(ns: str, element: Element, time: float, new_segment: bool) -> Sample:
    lat, lon = parse_position(
        element.findtext(f"{ns}Position/{ns}LatitudeDegrees"), element.findtext(f"{ns}Position/{ns}LongitudeDegrees")
    )
    distance = element.findtext(f"{ns}DistanceMeters")
    return Sample(time, lat=lat, lon=lon, distance_m=_optional_number(distance), new_segment=new_segment)


def _optional_number(text: str | None) -> float | None:
    return parse_number(text) if text and text.strip() else None


def _source_and_device(ns: str, creator: Element | None) -> tuple[str, str | None]:
    """A watch or bike computer is a Device_t creator with a real product id (apps write 0) or a known maker."""
    if creator is None:
        return "app", None
    name = (creator.findtext(f"{ns}Name") or "").strip() or None
    product_id = (creator.findtext(f"{ns}ProductID") or "").strip()
    is_device_type = creator.get(_XSI_TYPE, "").rpartition(":")[2] == "Device_t"
    is_device = (is_device_type and product_id.isdigit() and int(product_id) > 0) or names_device_maker(name)
    return ("device" if is_device else "app"), name
