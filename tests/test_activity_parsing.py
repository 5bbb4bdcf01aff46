"""Reading activity files: real FIT, GPX and TCX recordings against their manifest, and hostile, broken
or odd uploads refused with a code and a message naming the file."""

import csv
import gzip
import io
import math
import struct
import time
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from kindstride.activities.archive import unpack_upload
from kindstride.activities.parsing import ActivityFileError, parse_activity
from kindstride.rules.contract import SPORTS
from tests.support.samples import SAMPLES, needs_samples

# Files the manifest describes that kindstride refuses on purpose (the decision table in parsing.py).
REFUSED = {
    "fit-strava-android-app-run-broken.fit": "corrupt_file",
    "fit-garmin-fr70-footpod-run-no-gps-relative-timestamps.fit": "no_timestamps",
    "fit-garmin-fr920xt-triathlon-chained-multisport.fit": "unsupported_multisport",
    "gpx-gpsbabel-bogus-1901-timestamps.gpx": "bogus_timestamps",
    "tcx-fitbit-versa-bike-bogus-coordinates.tcx": "inconsistent_totals",
}
# The manifest's `sport` column is what the file says; this is what kindstride makes of it.
KINDSTRIDE_SPORT = {
    "running": "run", "Running": "run", "9": "run", "walking": "walk", "cycling": "ride", "Biking": "ride", "": "other",
}
# Phone apps and converters; every other accepted sample comes from a watch or bike computer.
FROM_APPS = {
    "gpx-google-mytracks-android-track.gpx",
    "gpx-gpsbabel-garmin-multi-track-with-empty-track.gpx",
    "gpx-strava-export-run-with-stops.gpx",
    "tcx-fitness-app-run-local-utc-offset.tcx",
    "tcx-strava-export-run-with-stops.tcx",
    "tcx-unknown-app-run-17-laps-no-creator.tcx",
}


def manifest() -> list[dict[str, str]]:
    path = SAMPLES / "MANIFEST.tsv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as lines:
        return list(csv.DictReader(lines, delimiter="\t"))


def manifest_params():
    rows = [pytest.param(row, id=row["file"]) for row in manifest()]
    return rows or [pytest.param({}, id="no-samples", marks=needs_samples)]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def refusal(filename: str, data: bytes, **limits) -> ActivityFileError:
    with pytest.raises(ActivityFileError) as caught:
        parse_activity(filename, data, **limits)
    assert caught.value.message.startswith(f"{filename}: ")
    return caught.value


def close(actual: float, expected: float, *, relative: float, absolute: float = 0.0) -> bool:
    return abs(actual - expected) <= max(absolute, relative * abs(expected))


# Real recordings


@needs_samples
@pytest.mark.parametrize("row", manifest_params())
def test_sample_matches_the_manifest(row):
    name = row["file"]
    if row["notes"].startswith("broken:") or name in REFUSED:
        assert refusal(name, sample(name)).code == REFUSED[name]
        return
    activity = parse_activity(name, sample(name))
    assert activity.format == row["format"]
    assert activity.raw_sport == (row["sport"] or None)
    assert activity.sport == KINDSTRIDE_SPORT[row["sport"]] and activity.sport in SPORTS
    expected_start = datetime.fromisoformat(row["start_utc"])
    assert activity.start.tzinfo is not None and abs(activity.start - expected_start) <= timedelta(seconds=1)
    assert close(activity.elapsed_s, float(row["elapsed_s"]), relative=0.01, absolute=2)
    if row["timer_s"]:
        assert close(activity.moving_s, float(row["timer_s"]), relative=0.01, absolute=2)
    assert 0 < activity.moving_s <= activity.elapsed_s + 2
    assert close(activity.distance_m, float(row["distance_m"]), relative=0.01)
    assert activity.has_gps == (row["has_gps"] == "true")
    assert activity.points == int(row["points"])
    assert activity.source == ("app" if name in FROM_APPS else "device")
    splits = activity.split_paces_s_per_km
    assert abs(len(splits) - math.floor(activity.distance_m / 1000)) <= 1
    assert all(split > 0 for split in splits) and sum(splits) <= activity.moving_s + 1


@needs_samples
def test_every_broken_sample_has_a_decided_refusal():
    broken = {row["file"] for row in manifest() if row["notes"].startswith("broken:")}
    assert broken and broken <= set(REFUSED)


@needs_samples
def test_the_same_run_reads_alike_from_fit_tcx_and_gpx():
    fit = parse_activity("run.fit", sample("fit-garmin-fr220-short-run-with-pauses.fit"))
    tcx = parse_activity("run.tcx", sample("tcx-garmin-fr220-short-run-with-pauses.tcx"))
    gpx = parse_activity("run.gpx", sample("gpx-garmin-connect-fr220-short-run.gpx"))
    assert fit.start == tcx.start == gpx.start
    assert fit.distance_m == pytest.approx(tcx.distance_m) and fit.moving_s == pytest.approx(tcx.moving_s, abs=0.1)
    assert fit.device == tcx.device == "Garmin Forerunner 220"
    assert gpx.device == "Garmin Connect" and gpx.source == "device"


@needs_samples
def test_fit_details_the_rules_rely_on():
    trainer = parse_activity("trainer.fit", sample("fit-garmin-edge800-indoor-trainer-ride-no-gps.fit"))
    assert (trainer.sport, trainer.distance_m, trainer.has_gps, trainer.split_paces_s_per_km) == ("ride", 0, False, ())
    paused = parse_activity("run.fit", sample("fit-garmin-fenix5xplus-run-with-pauses.fit"))
    assert paused.device == "Garmin Fenix 5X Plus" and len(paused.split_paces_s_per_km) == 18
    # The timer was stopped 224 s in all: no split may include that time.
    assert sum(paused.split_paces_s_per_km) < paused.moving_s


@needs_samples
def test_a_multisport_file_names_its_legs():
    error = refusal("tri.fit", sample("fit-garmin-fr920xt-triathlon-chained-multisport.fit"))
    assert "swimming/open_water, transition, cycling, transition, running" in error.message
    assert "each leg" in error.message


@needs_samples
def test_gzipped_files_read_like_the_originals():
    original = sample("fit-garmin-fr110-run-5-laps.fit")
    assert parse_activity("run.fit.gz", gzip.compress(original)) == parse_activity("run.fit", original)


@needs_samples
def test_a_truncated_fit_file_is_corrupt():
    error = refusal("run.fit", sample("fit-garmin-fr110-run-5-laps.fit")[:500])
    assert error.code == "corrupt_file" and "truncated or corrupt" in error.message


@needs_samples
def test_the_strava_android_file_reports_where_it_breaks():
    error = refusal("run.fit", sample("fit-strava-android-app-run-broken.fit"))
    assert error.message == "run.fit: the file is truncated or corrupt (FIT parsing error at byte 7471)"


# Hostile and broken uploads

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<%(root)s><name>&lol9;</name></%(root)s>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE gpx [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><name>&secret;</name></trk></gpx>"""


@pytest.mark.parametrize(("filename", "root"), [("laughs.gpx", b"gpx"), ("laughs.tcx", b"TrainingCenterDatabase")])
def test_entity_expansion_is_refused(filename, root):
    started = time.monotonic()
    assert refusal(filename, BILLION_LAUGHS % {b"root": root}).code == "xml_entities_forbidden"
    assert time.monotonic() - started < 1


def test_external_entities_are_refused_unread():
    error = refusal("xxe.gpx", XXE)
    assert error.code == "xml_entities_forbidden" and "root:" not in error.message


@pytest.mark.parametrize(
    ("filename", "data", "code"),
    [
        ("empty.fit", b"", "empty_file"),
        ("noise.fit", bytes(range(256)) * 4, "unknown_format"),
        ("notes.txt", b"just some text", "unknown_format"),
        ("map.gpx", b"<?xml version='1.0'?><kml><Document/></kml>", "unknown_format"),
        ("cut.gpx", b"<?xml version='1.0'?><gpx><trk><trkseg><trkpt lat='1' lon='2'>", "corrupt_file"),
        ("odd.gpx", b"<?xml version='1.0' encoding='UTF-T'?><gpx/>", "corrupt_file"),
        ("cut.fit.gz", gzip.compress(b"0123456789" * 100)[:30], "corrupt_file"),
        ("empty.fit.gz", gzip.compress(b""), "empty_file"),
    ],
)
def test_unreadable_files_are_refused(filename, data, code):
    assert refusal(filename, data).code == code


def test_random_bytes_named_fit_say_so():
    error = refusal("run.fit", b"\x00garbage" * 50)
    assert error.message == "run.fit: the file is not a FIT file (it has no FIT header)"


def test_a_file_over_the_limit_is_too_large_even_gzipped():
    track = gpx_track([(0, 0), (60, 250)])
    assert refusal("run.gpx", track, max_bytes=100).code == "too_large"
    assert refusal("run.gpx.gz", gzip.compress(track + b" " * 10_000), max_bytes=5000).code == "too_large"


# Crafted GPX and TCX


def gpx_track(points, *, with_times=True, segment_breaks=(), doctype=b"") -> bytes:
    """A GPX 1.1 track northward along the Greenwich meridian: points are (seconds, metres from the start)."""
    start = datetime(2024, 5, 5, 6, 0, tzinfo=UTC)
    segments, current = [], []
    for index, (seconds, metres) in enumerate(points):
        if index in segment_breaks:
            segments.append(current)
            current = []
        time_element = f"<time>{(start + timedelta(seconds=seconds)).isoformat()}</time>" if with_times else ""
        latitude = math.degrees(metres / 6_371_008.8)
        current.append(f'<trkpt lat="{latitude:.9f}" lon="0.0001">{time_element}</trkpt>')
    segments.append(current)
    body = "".join(f"<trkseg>{''.join(segment)}</trkseg>" for segment in segments)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>' + doctype
        + f'<gpx version="1.1" creator="Test" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><type>running</type>{body}</trk></gpx>".encode()
    )


def test_split_paces_follow_the_time_at_each_kilometre():
    # 100 m steps: the first km in 300 s, the second in 330 s plus a 120 s stop, the third in 360 s, then 500 m.
    points, seconds = [(0, 0.0)], 0.0
    for km, pace in enumerate((300, 330, 360, 400)):
        for step in range(1, 11 if km < 3 else 6):
            seconds += pace / 10
            points.append((seconds, km * 1000 + step * 100.0))
            if (km, step) == (1, 5):
                seconds += 120
                points.append((seconds, km * 1000 + step * 100.0))
    activity = parse_activity("straight.gpx", gpx_track(points))
    assert activity.split_paces_s_per_km == pytest.approx((300, 330, 360), abs=1)
    assert activity.distance_m == pytest.approx(3500, abs=0.5)
    assert activity.elapsed_s == pytest.approx(seconds) and activity.moving_s == pytest.approx(seconds - 120)
    assert (activity.sport, activity.source, activity.device) == ("run", "app", "Test")


def test_gpx_segments_are_not_bridged():
    track = gpx_track([(0, 0), (300, 1000), (900, 5000), (1200, 6000)], segment_breaks={2})
    activity = parse_activity("two.gpx", track)
    assert activity.distance_m == pytest.approx(2000, abs=0.5)
    assert activity.moving_s == pytest.approx(600) and activity.elapsed_s == pytest.approx(1200)
    assert activity.split_paces_s_per_km == pytest.approx((300, 300))


def test_a_gpx_without_times_has_no_timestamps():
    assert refusal("plan.gpx", gpx_track([(0, 0), (60, 250)], with_times=False)).code == "no_timestamps"


def test_a_gpx_with_all_points_at_one_instant_is_bogus():
    assert refusal("stuck.gpx", gpx_track([(0, 0), (0, 250), (0, 500)])).code == "bogus_timestamps"


def test_a_gpx_with_only_waypoints_has_no_track():
    waypoints = b'<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><wpt lat="1" lon="2"/></gpx>'
    assert refusal("places.gpx", waypoints).code == "no_track"


def test_a_harmless_doctype_is_refused_too():
    track = gpx_track([(0, 0), (60, 250)], doctype=b"<!DOCTYPE gpx>")
    assert refusal("old.gpx", track).code == "xml_entities_forbidden"


def tcx_document(activities: bytes) -> bytes:
    return (
        b'<?xml version="1.0"?><TrainingCenterDatabase '
        b'xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2">' + activities
        + b"</TrainingCenterDatabase>"
    )


def tcx_activity(sport: bytes) -> bytes:
    return (
        b'<Activity Sport="' + sport + b'"><Id>2024-05-05T06:00:00Z</Id>'
        b'<Lap StartTime="2024-05-05T06:00:00Z"><TotalTimeSeconds>600</TotalTimeSeconds>'
        b"<DistanceMeters>2000</DistanceMeters><Track>"
        b"<Trackpoint><Time>2024-05-05T06:00:00Z</Time><DistanceMeters>0</DistanceMeters></Trackpoint>"
        b"<Trackpoint><Time>2024-05-05T06:10:00Z</Time><DistanceMeters>2000</DistanceMeters></Trackpoint>"
        b"</Track></Lap></Activity>"
    )


def test_a_tcx_without_positions_uses_its_distance_stream():
    document = tcx_document(b"<Activities>" + tcx_activity(b"Running") + b"</Activities>")
    activity = parse_activity("treadmill.tcx", document)
    assert (activity.distance_m, activity.moving_s, activity.has_gps) == (2000, 600, False)
    assert activity.split_paces_s_per_km == pytest.approx((300, 300))
    assert (activity.source, activity.device) == ("app", None)


def test_a_tcx_with_two_activities_is_multisport():
    two = tcx_document(b"<Activities>" + tcx_activity(b"Biking") + tcx_activity(b"Running") + b"</Activities>")
    error = refusal("brick.tcx", two)
    assert error.code == "unsupported_multisport" and "Biking, Running" in error.message


def test_a_tcx_course_is_not_an_activity():
    course = tcx_document(b"<Courses><Course><Name>Loop</Name><Track/></Course></Courses>")
    assert refusal("loop.tcx", course).code == "not_an_activity"


# Archives


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_central_directory(archive: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Rewrite a field of the first central directory entry, which is what zipfile trusts."""
    patched = bytearray(archive)
    struct.pack_into(fmt, patched, archive.index(b"PK\x01\x02") + offset, value)
    return bytes(patched)


def parsed_members(filename: str, data: bytes, **limits):
    outcomes = {}
    for member in unpack_upload(filename, data, **limits):
        if member.error:
            outcomes[member.filename] = member.error.code
            continue
        try:
            outcomes[member.filename] = parse_activity(member.filename, member.data).sport
        except ActivityFileError as error:
            outcomes[member.filename] = error.code
    return outcomes


def test_a_plain_upload_is_a_single_member():
    [member] = unpack_upload("C:\\Users\\me\\run.gpx", b"<gpx/>")
    assert (member.filename, member.data, member.error) == ("run.gpx", b"<gpx/>", None)


def test_a_zero_byte_zip_is_an_empty_file():
    [member] = unpack_upload("export.zip", b"")
    with pytest.raises(ActivityFileError, match="empty") as caught:
        parse_activity(member.filename, member.data)
    assert caught.value.code == "empty_file"


def test_a_zip_without_files_is_an_empty_archive():
    [member] = unpack_upload("export.zip", zip_of({"folder/": b""}))
    assert member.error.code == "empty_archive" and member.error.message.startswith("export.zip: ")


def test_a_damaged_zip_is_corrupt():
    [member] = unpack_upload("export.zip", zip_of({"a.gpx": gpx_track([(0, 0), (60, 250)])})[:40])
    assert member.error.code == "corrupt_file"


FIT_HEADER_PROMISING_1000_BYTES = bytes([14, 0x10, 0, 0]) + struct.pack("<I", 1000) + b".FIT" + bytes(2)


def test_good_files_survive_a_bad_one_and_junk_is_skipped():
    track = gpx_track([(0, 0), (300, 1000)])
    upload = zip_of({
        "export/activities/morning.gpx": track,
        "export/activities/evening.gpx.gz": gzip.compress(track),
        "export/activities/noon.gpx": track,
        "export/activities/broken.fit": FIT_HEADER_PROMISING_1000_BYTES + b"\x01" * 20,
        "__MACOSX/export/._morning.gpx": b"resource fork",
        "export/.DS_Store": b"finder",
    })
    assert parsed_members("export.zip", upload) == {
        "morning.gpx": "run", "evening.gpx.gz": "run", "noon.gpx": "run", "broken.fit": "corrupt_file",
    }


def test_a_zip_inside_a_zip_is_not_opened():
    inner = zip_of({"a.gpx": gpx_track([(0, 0), (60, 250)])})
    assert parsed_members("outer.zip", zip_of({"inner.zip": inner})) == {"inner.zip": "nested_archive"}


def test_too_many_files_refuse_the_whole_archive():
    upload = zip_of({f"{index}.gpx": b"<gpx/>" for index in range(4)})
    [member] = unpack_upload("export.zip", upload, max_files=3)
    assert member.error.code == "too_many_files" and "4 files" in member.error.message


def test_limits_on_members_and_on_the_whole_archive():
    track = gpx_track([(seconds, seconds * 3.0) for seconds in range(0, 600, 5)])
    upload = zip_of({"a.gpx": track, "b.gpx": track, "c.gpx": track})
    assert parsed_members("export.zip", upload, max_member_bytes=len(track) - 1) == dict.fromkeys(
        ("a.gpx", "b.gpx", "c.gpx"), "too_large"
    )
    assert parsed_members("export.zip", upload, max_total_bytes=2 * len(track)) == {
        "a.gpx": "run", "b.gpx": "run", "c.gpx": "too_large",
    }


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """200 MB of zeros in one member, about 200 kB compressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("bomb.fit", "w") as member:
        for _ in range(200):
            member.write(bytes(1024 * 1024))
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_without_inflating_it(zip_bomb):
    started = time.monotonic()
    [member] = unpack_upload("bomb.zip", zip_bomb)
    assert member.error.code == "zip_bomb" and member.error.message.startswith("bomb.fit: ")
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("declared_ratio", [0.01, 20])
def test_a_zip_bomb_lying_about_its_size_is_refused(zip_bomb, declared_ratio):
    compressed = struct.unpack_from("<I", zip_bomb, zip_bomb.index(b"PK\x01\x02") + 20)[0]
    lying = patch_central_directory(zip_bomb, 24, "<I", int(compressed * declared_ratio))
    started = time.monotonic()
    [member] = unpack_upload("bomb.zip", lying)
    # Reading stops at the declared size, where the member's checksum then fails.
    assert member.data is None and member.error.code == "corrupt_file"
    assert time.monotonic() - started < 1


def test_an_encrypted_member_is_refused():
    encrypted = patch_central_directory(zip_of({"a.gpx": b"<gpx/>"}), 8, "<H", 0x1)
    assert parsed_members("export.zip", encrypted) == {"a.gpx": "encrypted_file"}
