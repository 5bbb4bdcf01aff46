"""Unpacking an upload: a zip of activity files (a bulk export from Strava or Garmin), or a single file.

Each zip member is inflated through a streaming cap: a member whose declared sizes already break a limit
is refused unread, and reading stops at the first byte past a limit whatever the header declared, so a
zip bomb is refused without being inflated. Folders, macOS resource forks (__MACOSX/) and dotfiles are
skipped; members keep only their base name; zips inside the zip are not opened.

Refusals, besides parsing's: empty_archive (no files), too_many_files (the whole upload), zip_bomb (a
member inflating more than max_ratio times its compressed size), too_large (a member over
max_member_bytes, or the members past max_total_bytes in all), nested_archive, encrypted_file,
corrupt_file (a damaged zip or member), unknown_format (a compression method Python cannot read).
"""

import io
import zipfile
import zlib
from dataclasses import dataclass

from kindstride.activities.formats.base import describe_size
from kindstride.activities.parsing import MAX_FILE_BYTES, ZIP_MAGICS, ActivityFileError, safe_basename

MAX_FILES = 500
MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_RATIO = 100  # activity files deflate 5 to 20 fold; a hundredfold member is a bomb
_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ArchiveMember:
    """One file of the upload: its data to parse, or why it could not be unpacked."""

    filename: str
    data: bytes | None
    error: ActivityFileError | None


def unpack_upload(
    filename: str,
    data: bytes,
    *,
    max_files: int = MAX_FILES,
    max_member_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: int = MAX_RATIO,
) -> list[ArchiveMember]:
    name = safe_basename(filename)
    if not data.startswith(ZIP_MAGICS):
        return [ArchiveMember(name, data, None)]
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):  # as mangled headers raise
        return [_refused(name, "corrupt_file", "the zip archive is damaged or cut short")]
    with archive:
        entries = [entry for entry in archive.infolist() if _is_activity_file(entry)]
        if not entries:
            return [_refused(name, "empty_archive", "the zip archive holds no files")]
        if len(entries) > max_files:
            return [_refused(
                name, "too_many_files", f"the zip archive holds {len(entries)} files; at most {max_files} at a time"
            )]
        limits = _Limits(max_member_bytes, max_total_bytes, max_ratio, remaining_total_bytes=max_total_bytes)
        return [_unpack(archive, entry, limits) for entry in entries]


@dataclass
class _Limits:
    max_member_bytes: int
    max_total_bytes: int
    max_ratio: int
    remaining_total_bytes: int


def _unpack(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limits: _Limits) -> ArchiveMember:
    name = safe_basename(entry.filename)
    if entry.flag_bits & 0x1:
        return _refused(name, "encrypted_file", "the file is password-protected")
    ratio_cap = limits.max_ratio * max(entry.compress_size, 1)
    bomb = f"the file inflates more than {limits.max_ratio} times its compressed size, as activity files never do"
    too_large = f"the file is larger than {describe_size(limits.max_member_bytes)}"
    # Declared sizes may lie, so they can only refuse early; the read below is capped regardless.
    if entry.file_size > ratio_cap:
        return _refused(name, "zip_bomb", bomb)
    if entry.file_size > limits.max_member_bytes:
        return _refused(name, "too_large", too_large)
    limit = min(limits.max_member_bytes, limits.remaining_total_bytes, ratio_cap)
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(entry) as stream:
            while size <= limit and (chunk := stream.read(min(_CHUNK_BYTES, limit + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
    except NotImplementedError:
        return _refused(name, "unknown_format", "the file is compressed with a method that cannot be read")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):  # as mangled headers raise
        return _refused(name, "corrupt_file", "the file is damaged inside the zip archive")
    finally:
        limits.remaining_total_bytes = max(0, limits.remaining_total_bytes - size)
    if size > ratio_cap:
        return _refused(name, "zip_bomb", bomb)
    if size > limits.max_member_bytes:
        return _refused(name, "too_large", too_large)
    if size > limit:
        return _refused(
            name, "too_large",
            f"the zip archive unpacks to more than {describe_size(limits.max_total_bytes)}; upload it in parts",
        )
    data = b"".join(chunks)
    if data.startswith(ZIP_MAGICS):
        return _refused(name, "nested_archive", "a zip archive inside a zip archive is not opened; upload it alone")
    return ArchiveMember(name, data, None)


def count_files(filename: str, data: bytes) -> int:
    """How many files unpack_upload would give for this upload, from the zip's directory alone (nothing is
    inflated): to tell a quick upload from a long one. A damaged zip counts as one file (its refusal)."""
    if not data.startswith(ZIP_MAGICS):
        return 1
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return max(1, sum(1 for entry in archive.infolist() if _is_activity_file(entry)))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return 1


def _is_activity_file(entry: zipfile.ZipInfo) -> bool:
    parts = entry.filename.replace("\\", "/").split("/")
    return not entry.is_dir() and "__MACOSX" not in parts and bool(parts[-1]) and not parts[-1].startswith(".")


def _refused(name: str, code: str, problem: str) -> ArchiveMember:
    return ArchiveMember(name, None, ActivityFileError(code, name, problem))
