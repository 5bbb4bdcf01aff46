"""GPX 1.0 and 1.1 tracks.

Read here with defusedxml rather than gpxpy: gpxpy hands the text to lxml or ElementTree without refusing
DTDs and entities, and registers namespaces globally. Only tracks count; waypoints and routes are plans.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from kindstride.activities.formats.base import (
    ActivityFileError,
    ParsedActivity,
    Sample,
    local_name,
    names_device_maker,
    normalise_sport,
    parse_position,
    parse_time,
    summarise,
)

# Strava's GPX exports name the sport by an unpublished number; these are the widely documented ones.
_STRAVA_TYPE_CODES = {"1": "ride", "4": "hike", "9": "run", "10": "walk", "16": "swim"}


def read_gpx(filename: str, root: Element, events: Iterator[tuple[str, Element]]) -> ParsedActivity:
    """`root` is the <gpx> element just started; `events` the rest of the document."""
    ns = root.tag.removesuffix(local_name(root.tag))
    creator = root.get("creator")
    raw_sport = None
    samples: list[Sample] = []
    points = 0
    segment_starts = False
    path = [root.tag]
    for event, element in events:
        if event == "start":
            path.append(element.tag)
            segment_starts = segment_starts or element.tag == f"{ns}trkseg"
            continue
        path.pop()
        parent = path[-1] if path else None
        if element.tag == f"{ns}trkpt":
            points += 1
            time = element.findtext(f"{ns}time")
            if time:  # a point without a time cannot be placed in the activity
                lat, lon = parse_position(element.get("lat"), element.get("lon"))
                samples.append(Sample(parse_time(time), lat=lat, lon=lon, new_segment=segment_starts))
                segment_starts = False
            element.clear()  # keep memory flat on long tracks
        elif element.tag == f"{ns}type" and parent == f"{ns}trk" and raw_sport is None:
            raw_sport = (element.text or "").strip() or None
    if not points:
        raise ActivityFileError("no_track", filename, "the file holds no recorded track (only waypoints or routes)")
    if not samples:
        raise ActivityFileError(
            "no_timestamps", filename, "the track points carry no times, so the date and duration are unknown"
        )
    track = summarise(samples)
    if track.distance_m is None:
        raise ActivityFileError("no_distance", filename, "the track points have no usable positions")
    return ParsedActivity(
        format="gpx",
        sport=_sport(raw_sport, creator),
        raw_sport=raw_sport,
        start=datetime.fromtimestamp(track.start, UTC),
        elapsed_s=track.end - track.start,
        moving_s=track.moving_s,
        distance_m=track.distance_m,
        has_gps=track.has_gps,
        is_indoor=False,
        source="device" if names_device_maker(creator) else "app",
        device=creator,
        split_paces_s_per_km=track.split_paces_s_per_km,
        points=points,
    )


def _sport(raw_sport: str | None, creator: str | None) -> str:
    if raw_sport and raw_sport.isdigit() and creator and "strava" in creator.lower():
        return _STRAVA_TYPE_CODES.get(raw_sport, "other")
    return normalise_sport(raw_sport)
