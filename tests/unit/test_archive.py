"""Safe extraction of function archives, on real tar files written to disk."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dartcloud.archive import (
    ArchiveError,
    ArchiveLimits,
    ArchiveTooLarge,
    CorruptArchive,
    extract_archive,
    find_project,
)

LIMITS = ArchiveLimits(max_files=100, max_unpacked_bytes=1024 * 1024)
HELLO = {"pubspec.yaml": b"name: hello\n", "bin/main.dart": b"void main() {}\n"}


def write_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def hello_members() -> list:
    return [regular(name, data) for name, data in HELLO.items()]


def test_extracts_regular_files_and_modes(tmp_path):
    archive = write_archive(tmp_path / "a.tar.gz",
                            hello_members() + [regular("bin/main.sh", b"#!/bin/sh\n", 0o755)])

    extract_archive(archive, tmp_path / "out", LIMITS)

    assert (tmp_path / "out" / "pubspec.yaml").read_bytes() == HELLO["pubspec.yaml"]
    assert os.stat(tmp_path / "out" / "bin" / "main.sh").st_mode & 0o777 == 0o755
    assert os.stat(tmp_path / "out" / "pubspec.yaml").st_mode & 0o777 == 0o644


@pytest.mark.parametrize("member, fragment", [
    (regular("/abs/file", b"x"), "absolute path"),
    (regular("../escape", b"x"), "'..' component"),
    (regular("bin/../../escape", b"x"), "'..' component"),
    (regular("a\\b", b"x"), "backslash"),
    (special("bin/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (special("bin/link", tarfile.SYMTYPE, "main.dart"), "is a link"),
    (special("hard", tarfile.LNKTYPE, "pubspec.yaml"), "is a link"),
    (special("dev", tarfile.CHRTYPE), "device file or FIFO"),
    (special("blk", tarfile.BLKTYPE), "device file or FIFO"),
    (special("fifo", tarfile.FIFOTYPE), "device file or FIFO"),
])
def test_rejects_unsafe_member_and_cleans_up(tmp_path, member, fragment):
    archive = write_archive(tmp_path / "a.tar.gz", hello_members() + [member])
    destination = tmp_path / "out"

    with pytest.raises(ArchiveError) as raised:
        extract_archive(archive, destination, LIMITS)

    assert fragment in raised.value.message
    assert not destination.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.tar.gz"]


def test_rejects_link_before_writing_later_members(tmp_path):
    members = [special("evil", tarfile.SYMTYPE, "/tmp"), regular("evil/file", b"x")]
    archive = write_archive(tmp_path / "a.tar.gz", members)

    with pytest.raises(ArchiveError):
        extract_archive(archive, tmp_path / "out", LIMITS)

    assert not (tmp_path / "out").exists()


def test_rejects_file_then_folder_of_same_name(tmp_path):
    archive = write_archive(tmp_path / "a.tar.gz", [regular("bin", b"x"), regular("bin/main.dart", b"")])

    with pytest.raises(ArchiveError) as raised:
        extract_archive(archive, tmp_path / "out", LIMITS)

    assert "which is a file" in raised.value.message


def test_member_count_limit(tmp_path):
    members = [regular(f"f{i}", b"") for i in range(5)]
    archive = write_archive(tmp_path / "a.tar.gz", members)

    with pytest.raises(ArchiveTooLarge):
        extract_archive(archive, tmp_path / "out", ArchiveLimits(max_files=4, max_unpacked_bytes=10))

    extract_archive(archive, tmp_path / "ok", ArchiveLimits(max_files=5, max_unpacked_bytes=10))


def test_unpacked_size_limit(tmp_path):
    archive = write_archive(tmp_path / "a.tar.gz", [regular("big", b"0" * 2000)])

    with pytest.raises(ArchiveTooLarge) as raised:
        extract_archive(archive, tmp_path / "out", ArchiveLimits(max_files=10, max_unpacked_bytes=1999))

    assert "'big'" in raised.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"not gzip at all", b"\x1f\x8b\x08garbage"])
def test_corrupt_streams_are_rejected(tmp_path, content):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(content)

    with pytest.raises(CorruptArchive):
        extract_archive(archive, tmp_path / "out", LIMITS)

    assert not (tmp_path / "out").exists()


def test_truncated_archive_is_rejected(tmp_path):
    whole = write_archive(tmp_path / "a.tar.gz", hello_members() + [regular("data", os.urandom(50_000))])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:30_000])

    with pytest.raises(CorruptArchive):
        extract_archive(cut, tmp_path / "out", LIMITS)

    assert not (tmp_path / "out").exists()


def test_find_project_prefers_bin_main(tmp_path):
    archive = write_archive(tmp_path / "a.tar.gz", hello_members() + [regular("main.dart", b"")])
    extract_archive(archive, tmp_path / "out", LIMITS)

    project = find_project(tmp_path / "out")

    assert project.entry_point == "bin/main.dart"
    assert project.package_name == "hello"
    assert project.root == tmp_path / "out"


def test_find_project_unwraps_single_folder(tmp_path):
    members = [regular("fn/" + name, data) for name, data in HELLO.items()]
    extract_archive(write_archive(tmp_path / "a.tar.gz", members), tmp_path / "out", LIMITS)

    project = find_project(tmp_path / "out")

    assert project.root == tmp_path / "out" / "fn"


@pytest.mark.parametrize("files, fragment", [
    ({"bin/main.dart": b""}, "no pubspec.yaml"),
    ({"pubspec.yaml": b"name: x\n"}, "neither bin/main.dart nor main.dart"),
    ({"pubspec.yaml": b"name: [\n", "main.dart": b""}, "not valid YAML at line"),
    ({"pubspec.yaml": b"- a list\n", "main.dart": b""}, "YAML mapping"),
    ({"pubspec.yaml": b"name: ''\n", "main.dart": b""}, "no `name` field"),
    ({"pubspec.yaml": b"name: 5\n", "main.dart": b""}, "no `name` field"),
])
def test_find_project_rejects_incomplete_tree(tmp_path, files, fragment):
    members = [regular(name, data) for name, data in files.items()]
    extract_archive(write_archive(tmp_path / "a.tar.gz", members), tmp_path / "out", LIMITS)

    with pytest.raises(ArchiveError) as raised:
        find_project(tmp_path / "out")

    assert fragment in raised.value.message
