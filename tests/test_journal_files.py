"""journal.files and the journal readers on top of it: nothing followed, regular files only,
every read bounded; segment names matched whole, in ASCII digits."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from leasedns import journal
from leasedns.journal import files
from leasedns.journal.files import Refused
from leasedns.journal.lines import to_line
from leasedns.model import Event, Kind


def ev(n: int, peer: str = "peer-b") -> Event:
    return Event(
        Kind.COMMIT, 1_800_000_000_000_000 + n, f"192.0.2.{n % 250 + 1}", "02:00:00:00:00:01",
        f"pc{n}", "", 600, peer,
    )  # fmt: skip


@pytest.fixture
def d(tmp_path: Path) -> Path:
    base = tmp_path / "peer-b"
    base.mkdir()
    (base / "file").write_bytes(b"12345\n")
    (base / "link").symlink_to(base / "file")
    (base / "dir").mkdir()
    os.mkfifo(base / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(base / "sock"))
    s.close()
    return base


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("link", "a symbolic link"),
        ("fifo", "a FIFO"),
        ("dir", "a directory"),
        ("sock", "a socket"),
    ],
)
def test_only_a_regular_file_is_opened(d: Path, name: str, what: str) -> None:
    with pytest.raises(Refused, match=f"{name}: {what}, not a regular file; never followed"):
        files.read(d / name, 100)
    with files.Dir.at(d) as dd, pytest.raises(Refused):
        dd.copy(name, d / "copy", 100)
    assert not (d / "copy").exists()


def test_a_device_is_never_opened() -> None:
    with pytest.raises(Refused, match="zero: a character device, not a regular file"):
        files.read(Path("/dev/zero"), 100)


def test_a_read_stops_at_the_bound_and_at_the_size_when_opened(d: Path) -> None:
    assert files.read(d / "file", 6) == b"12345\n"
    with pytest.raises(Refused, match=r"file: 6 bytes, over the bound of 5 \(journal.max_bytes\)"):
        files.read(d / "file", 5)
    big = d / "sparse"
    with big.open("wb") as f:
        f.truncate(1 << 40)  # a terabyte of holes: refused by its size, never read
    with pytest.raises(Refused, match="over the bound"):
        files.read(big, 1 << 30)


def test_directories_are_not_followed(d: Path, tmp_path: Path) -> None:
    (tmp_path / "peer-c").symlink_to(d)
    with pytest.raises(Refused, match="peer-c: a symbolic link, not a directory"):
        files.Dir.at(tmp_path / "peer-c")
    with pytest.raises(Refused, match="peer-c: a symbolic link"):
        files.read(tmp_path / "peer-c" / "file", 100)
    with pytest.raises(Refused, match="file: a regular file, not a directory"):
        files.Dir.at(d / "file")
    with pytest.raises(FileNotFoundError):
        files.Dir.at(d / "nothing")
    with files.Dir.at(d) as dd, pytest.raises(Refused, match="holds more than 3 entries"):
        dd.names(3)


def test_a_copy_keeps_the_mtime_and_never_writes_through_a_link(d: Path) -> None:
    os.utime(d / "file", ns=(1, 1_700_000_000_123_456_789))
    with files.Dir.at(d) as dd:
        assert dd.copy("file", d / "copy", 100) == 6
        (d / "planted").symlink_to(d / "victim")
        with pytest.raises(FileExistsError):
            dd.copy("file", d / "planted", 100)
    assert (d / "copy").read_bytes() == b"12345\n"
    assert os.stat(d / "copy").st_mtime_ns == 1_700_000_000_123_456_789
    assert not (d / "victim").exists()


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("events-00000001.jsonl", 1),
        ("events-99999999.jsonl", 99999999),
        ("events-00000005.jsonl\n", None),
        ("events-\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0666.jsonl", None),
        ("events-\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff17.jsonl", None),
        ("events-1.jsonl", None),
        (".events-00000001.jsonl.tmp", None),
    ],
)
def test_segment_names_are_matched_whole_in_ascii_digits(name: str, number: int | None) -> None:
    assert journal.segment_number(name) == number


def test_readers_skip_and_report_what_is_not_a_segment_file(d: Path, tmp_path: Path) -> None:
    journal.append(d, [ev(1)])
    secret = tmp_path / "secret"
    secret.write_text(to_line(ev(2)))
    (d / journal.segment_name(2)).symlink_to(secret)
    os.mkfifo(d / journal.segment_name(3))
    (d / "events-00000004.jsonl\n").write_text(to_line(ev(4)))
    pj = journal.read_peer(d)
    assert [e.client_name for e in pj.events] == ["pc1"]
    assert len(pj.problems) == 2 and "a symbolic link" in pj.problems[0]
    assert "a FIFO" in pj.problems[1] and pj.problems[1].endswith("; segment skipped")
    with pytest.raises(Refused, match="a symbolic link"):
        journal.read_peer(d, strict=True)
    assert [n for n, _size, _mtime in journal.sizes(d)] == [1]
    with pytest.raises(Refused, match="a symbolic link"):  # this peer's compaction: never half
        journal.compact(d, 1_900_000_000_000_000, 10**15)
    assert journal.segment_name(1) in os.listdir(d)


def test_too_many_segments_are_not_read(tmp_path: Path) -> None:
    limits = journal.Limits(4 << 20)
    assert (limits.segments, limits.entries) == (6, 70)
    d = tmp_path / "peer-b"
    d.mkdir()
    for n in range(1, 8):
        (d / journal.segment_name(n)).write_text(to_line(ev(n)))
    with pytest.raises(Refused, match=r"7 segments, more than the 6 a journal of journal\.max"):
        journal.segments(d, limits)
    assert journal.read_peer(d, limits).events == []
    assert len(journal.read_peer(d).events) == 7


def test_a_line_longer_than_any_event_is_never_parsed(d: Path) -> None:
    seg = d / journal.segment_name(1)
    seg.write_text("[" * 70_000 + "\n" + to_line(ev(1)))
    pj = journal.read_peer(d)
    assert [e.client_name for e in pj.events] == ["pc1"]
    assert pj.problems == [
        f"{seg}:1: a line of 70000 characters; a journal line holds at most 65536; line skipped"
    ]


def test_an_append_never_writes_through_a_link_planted_in_the_journal(tmp_path: Path) -> None:
    """Shared storage: a partner makes this peer's last segment a link to another file."""
    own = tmp_path / "peer-a"
    journal.append(own, [ev(1, "peer-a")])
    victim = tmp_path / "victim"
    victim.write_text("")
    seg = own / journal.segment_name(1)
    seg.unlink()
    seg.symlink_to(victim)
    with pytest.raises(Refused, match="a symbolic link, not a journal segment; never written"):
        journal.append(own, [ev(2, "peer-a")])
    tmp = own / f".{journal.segment_name(2)}.tmp"
    tmp.symlink_to(victim)
    journal.write_small(tmp, b"data")  # the link is replaced, never written through
    assert victim.read_text() == "" and tmp.read_bytes() == b"data" and not tmp.is_symlink()


def test_an_owner_file_is_read_bounded_and_never_blocks(tmp_path: Path) -> None:
    (tmp_path / journal.OWNER).write_text("a" * 32 + "\n")
    assert journal.read_owner(tmp_path) == "a" * 32
    (tmp_path / journal.OWNER).write_text("a" * 300)
    with pytest.raises(Refused, match="300 bytes, over the bound of 256"):
        journal.read_owner(tmp_path)
    (tmp_path / journal.OWNER).unlink()
    os.mkfifo(tmp_path / journal.OWNER)
    with pytest.raises(Refused, match=r"\.owner: a FIFO, not a regular file"):
        journal.read_owner(tmp_path)  # returns at once: never opened
