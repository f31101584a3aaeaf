"""Safe extraction and validation of function archives (gzip-compressed tar).

Every member is checked before anything is written: no absolute paths, no
`..` components, no links, no device files or FIFOs, and limits on the member
count and on the unpacked size. Only regular files and folders are ever
created, by this module itself rather than by `tarfile.extract`, into a fresh
folder that the caller removes on failure. Decompressed bytes are counted as
they are read, so a gzip bomb stops at the limit instead of filling the disk.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import yaml

from .errors import BadRequest, InvalidInput, PayloadTooLarge

GZIP_MAGIC = b"\x1f\x8b"
ENTRY_POINTS = ("bin/main.dart", "main.dart")
MAX_PUBSPEC_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class ArchiveError(InvalidInput):
    code = "invalid_archive"


class CorruptArchive(BadRequest):
    code = "corrupt_archive"


class ArchiveTooLarge(PayloadTooLarge):
    code = "archive_too_large"


@dataclasses.dataclass(frozen=True)
class ArchiveLimits:
    max_files: int
    max_unpacked_bytes: int


@dataclasses.dataclass(frozen=True)
class Project:
    """A validated function source tree."""

    root: Path
    entry_point: str
    package_name: str


class _CountingReader:
    """A file object that raises once more than `limit` bytes have been read through it."""

    def __init__(self, raw, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise ArchiveTooLarge(
                f"the archive unpacks to more than {self._limit} bytes; "
                "remove build outputs and other files the function does not need")
        return data


def extract_archive(archive: Path, destination: Path, limits: ArchiveLimits) -> None:
    """Unpack the gzip-compressed tar `archive` into the new folder `destination`.

    Raises `ArchiveError` (422) for an unsafe member, `ArchiveTooLarge` (413)
    past a limit and `CorruptArchive` (400) for a stream that is not gzip or
    not tar, or is cut short. `destination` must not exist yet; on any error
    it is removed again.
    """
    with archive.open("rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            raise CorruptArchive("the archive is not gzip-compressed; create it with "
                                 "`tar czf function.tar.gz -C my_function .`")
        raw.seek(0)

        destination.mkdir(parents=True, exist_ok=False)
        try:
            _extract_members(raw, destination, limits)
        except BaseException:
            shutil.rmtree(destination, ignore_errors=True)
            raise


def _extract_members(raw, destination: Path, limits: ArchiveLimits) -> None:
    # Tar headers and padding take room beyond the file contents, so the raw
    # stream gets headroom over the content limit; contents are counted exactly below.
    stream_limit = limits.max_unpacked_bytes + (limits.max_files + 16) * 2048
    reader = _CountingReader(gzip.GzipFile(fileobj=raw, mode="rb"), stream_limit)
    files = 0
    unpacked = 0
    kinds: dict[PurePosixPath, str] = {}

    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                path = _check_member(member)
                if path is None:
                    continue

                files += 1
                if files > limits.max_files:
                    raise ArchiveTooLarge(f"the archive has more than {limits.max_files} members; "
                                          "remove files the function does not need")
                unpacked += member.size if member.isreg() else 0
                if unpacked > limits.max_unpacked_bytes:
                    raise ArchiveTooLarge(
                        f"the archive unpacks to more than {limits.max_unpacked_bytes} bytes "
                        f"(limit reached at {member.name!r}); remove files the function does not need")

                _claim_path(kinds, path, "dir" if member.isdir() else "file", member.name)
                target = destination.joinpath(*path.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    _write_file(tar, member, target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise CorruptArchive(f"the archive is corrupt or cut short ({error}); "
                             "create it again with `tar czf`") from None

    if files == 0:
        raise ArchiveError("the archive is empty; it must contain pubspec.yaml and bin/main.dart")


def _check_member(member: tarfile.TarInfo) -> PurePosixPath | None:
    """Return the member's safe relative path, None for the root itself, or raise."""
    name = member.name
    if member.issym() or member.islnk():
        raise ArchiveError(f"archive member {name!r} is a link; links are not allowed, "
                           "replace it with a copy of the file")
    if member.ischr() or member.isblk() or member.isfifo():
        raise ArchiveError(f"archive member {name!r} is a device file or FIFO; "
                           "only regular files and folders are allowed")
    if not (member.isreg() or member.isdir()) or member.issparse():
        raise ArchiveError(f"archive member {name!r} has an unsupported type; "
                           "only regular files and folders are allowed")

    if "\\" in name or "\x00" in name:
        raise ArchiveError(f"archive member {name!r} has a backslash or NUL in its path")
    if name.startswith("/"):
        raise ArchiveError(f"archive member {name!r} has an absolute path; "
                           "paths must be relative to the function's folder")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} has a '..' component; "
                           "paths must stay inside the function's folder")
    if not parts:
        return None
    return PurePosixPath(*parts)


def _claim_path(kinds: dict[PurePosixPath, str], path: PurePosixPath, kind: str, name: str) -> None:
    """Record `path` and its parents, rejecting a file and a folder of the same name."""
    for parent in reversed(path.parents[:-1]):
        if kinds.setdefault(parent, "dir") != "dir":
            raise ArchiveError(f"archive member {name!r} lies under {str(parent)!r}, which is a file")
    if kinds.setdefault(path, kind) != kind:
        raise ArchiveError(f"archive member {name!r} appears both as a file and as a folder")


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
    # O_NOFOLLOW: the folder contains no links, and this keeps it that way.
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as file:
        remaining = member.size
        while remaining > 0:
            chunk = source.read(min(_CHUNK, remaining))
            if not chunk:
                raise tarfile.ReadError(f"unexpected end of data in {member.name!r}")
            file.write(chunk)
            remaining -= len(chunk)
    os.chmod(target, mode)


def find_project(extracted: Path) -> Project:
    """Validate the unpacked tree and return its root, entry point and package name.

    A tree whose only top-level entry is a folder is read as if that folder
    were the root, as `tar czf f.tar.gz my_function/` produces.
    """
    root = extracted
    entries = list(root.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not (root / "pubspec.yaml").exists():
        root = entries[0]

    pubspec = root / "pubspec.yaml"
    if not pubspec.is_file():
        raise ArchiveError("the archive has no pubspec.yaml at its root (or under its single "
                           "top-level folder); add the function's pubspec.yaml")
    entry_point = next((entry for entry in ENTRY_POINTS if (root / entry).is_file()), None)
    if entry_point is None:
        raise ArchiveError("the archive has neither bin/main.dart nor main.dart; "
                           "add the function's entry point")

    return Project(root=root, entry_point=entry_point, package_name=_read_package_name(pubspec))


def _read_package_name(pubspec: Path) -> str:
    if pubspec.stat().st_size > MAX_PUBSPEC_BYTES:
        raise ArchiveError(f"pubspec.yaml is larger than {MAX_PUBSPEC_BYTES} bytes")
    try:
        document = yaml.safe_load(pubspec.read_bytes())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ArchiveError(f"pubspec.yaml is not valid YAML{where}; fix its syntax") from None

    if not isinstance(document, dict):
        raise ArchiveError("pubspec.yaml must be a YAML mapping with a `name` field")
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ArchiveError("pubspec.yaml has no `name` field; add `name: my_function`")
    return name.strip()
