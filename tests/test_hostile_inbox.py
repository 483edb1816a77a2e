"""The inbox, and every journal directory a partner writes, is a boundary: a hostile partner's
push (real rsync, links, FIFOs, devices and holes sent as they are) is refused, kept aside
within bounds and reported; it never makes apply read, follow, hang on, copy or push back
anything but regular segment files, and never adds an event to this peer's own journal."""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import need, tool, write_config
from leasedns import config, journal
from leasedns.commands import apply
from leasedns.journal import inbox
from leasedns.journal import sync as syncing
from leasedns.journal.lines import to_line
from leasedns.model import Event, Kind
from test_faults import mounted
from test_inbox import commit, names, status_of

pytestmark = pytest.mark.integration

LEASEDNS = shutil.which("leasedns") or str(Path(sys.executable).with_name("leasedns"))
SECRET = b"root:$6$not-for-partners$:19000:0:99999:7:::\n"


def installations(
    tmp: Path, bases: dict[str, Path] | None = None, **extra: object
) -> dict[str, config.Config]:
    """peer-a (this peer, the victim), peer-b (the hostile partner) and peer-c (an honest
    third peer that pushes to a only), each with its own state, pushing with real rsync."""
    tool("rsync")
    tool("tinydns-data")
    bases = bases or {}
    cfgs = {}
    targets = {"peer-a": ["peer-b"], "peer-b": ["peer-a"], "peer-c": ["peer-a"]}
    for me, to in targets.items():
        base = bases.get(me, tmp / me)
        base.mkdir(exist_ok=True)
        partners = [
            {"name": p, "rsync_target": str(bases.get(p, tmp / p) / "state" / "journal")}
            for p in to
        ]
        sync = {"partners": partners, "timeout_secs": 20}
        cfgs[me] = config.load(str(write_config(base, peer=me, sync=sync, **extra)))
        apply.ensure_dirs(cfgs[me])
    return cfgs


def start(cfgs: dict[str, config.Config]) -> None:
    """Each peer journals one client and pushes; a takes b's and c's journals."""
    commit(cfgs["peer-b"], "192.0.2.20", "bee")
    commit(cfgs["peer-c"], "192.0.2.30", "sea")
    commit(cfgs["peer-a"], "192.0.2.10", "ay")
    assert apply.run(cfgs["peer-b"]).synced == "peer-a: ok"
    assert apply.run(cfgs["peer-c"]).synced == "peer-a: ok"
    ra = apply.run(cfgs["peer-a"])
    assert ra.ok and ra.adopted == "peer-b, peer-c" and ra.synced == "peer-b: ok"
    assert names(cfgs["peer-a"]) == {"ay", "bee", "sea"}


def evil_root(tmp: Path, b: config.Config) -> Path:
    """The hostile partner's journal root: a copy of b's, to be changed and pushed by hand."""
    root = tmp / "evil"
    shutil.copytree(b.journal_dir, root, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    return root


def push(root: Path, into: config.Config, sender: str = "peer-b") -> None:
    """What a hostile partner's own rsync does: links, FIFOs and devices sent as they are,
    holes kept, into `into`'s inbox."""
    subprocess.run(
        [
            tool("rsync"),
            "-rtlS",
            "--devices",
            "--specials",
            "--delete",
            f"--exclude=/{syncing.INBOX_PREFIX}*",
            f"{root}/",
            f"{into.journal_dir / syncing.inbox_name(sender)}/",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def event(peer: str, ip: str, mac: str, name: str, kind: Kind = Kind.COMMIT) -> Event:
    """An event dated now, as a peer's apply journals it."""
    commit_ = kind is Kind.COMMIT
    now_us = time.time_ns() // 1000
    return Event(kind, now_us, ip, mac, name if commit_ else "", "", 600 if commit_ else None, peer)


def leasedns(
    cfg: config.Config, *args: str, nofile: int | None = None, memory: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `leasedns` program, in a process of its own (limits on open files or memory,
    as a loaded host would have them); killed if it hangs (the test then fails)."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [LEASEDNS, "-c", cfg.path, *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def refusal(cfg: config.Config) -> dict[str, dict[str, str]]:
    return json.loads((cfg.state_dir / inbox.INBOX_STATE).read_text())["refused"]  # type: ignore[no-any-return]


def kept(cfg: config.Config) -> list[Path]:
    return sorted((cfg.state_dir / inbox.REFUSED_DIR).iterdir())


def all_bytes(root: Path) -> bytes:
    """Every regular file's bytes under root, links not followed."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out.append(p.read_bytes())
    return b"".join(out)


def no_special_files(root: Path) -> None:
    for dirpath, dirs, files in os.walk(root):
        for f in [*dirs, *files]:
            mode = os.lstat(Path(dirpath) / f).st_mode
            assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), Path(dirpath) / f


def assert_copy_refused(cfg: config.Config, why: str, code: int = 2) -> None:
    """Refused as a CRITICAL problem that says why; the held copy serves on."""
    refused = refusal(cfg)
    assert list(refused) == ["peer-b/peer-b"], refused
    assert why in refused["peer-b/peer-b"]["problem"]
    got, text = status_of(cfg)
    assert got == code and "CRITICAL: inbox peer-b/peer-b" in text and why in text


@contextmanager
def small_disk(tmp: Path) -> Iterator[Path]:
    """peer-a's whole state (journals, inbox, refused copies) on a 64 MiB file system."""
    with mounted(
        tmp / "peer-a", "-t", "tmpfs", "-o", "size=64m,mode=0755", "leasedns-hostile"
    ) as fs:
        yield fs


# --- 3: links -----------------------------------------------------------------------------


def test_a_linked_segment_is_never_read_nor_pushed_back(tmp_path: Path) -> None:
    cfgs = installations(tmp_path)
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    start(cfgs)
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)  # a file peer-a can read and peer-b cannot
    root = evil_root(tmp_path, b)
    (root / "peer-b" / journal.segment_name(2)).symlink_to(secret)
    push(root, a)
    ra = apply.run(a)
    assert ra.ok and ra.adopted == "" and len(ra.inbox_refused) == 1
    assert "events-00000002.jsonl: a symbolic link, not a regular file" in ra.inbox_refused[0]
    assert_copy_refused(a, "a symbolic link")
    assert names(a) == {"ay", "bee", "sea"}  # the copy held before serves on
    # The secret is nowhere in a's journals or state, so no sync can carry it back.
    assert SECRET not in all_bytes(a.state_dir)
    no_special_files(a.state_dir / "refused")
    no_special_files(a.journal_dir / "peer-b")
    (k,) = kept(a)
    assert sorted(p.name for p in k.iterdir()) == [".owner", "events-00000001.jsonl", "why.txt"]
    assert "a symbolic link" in (k / "why.txt").read_text()
    assert syncing.run(a)[0].ok  # a's push back to b: nothing of the secret in it
    assert SECRET not in all_bytes(b.journal_dir / ".incoming-peer-a")
    # Told once; status keeps telling until the partner pushes a good copy.
    assert apply.run(a).inbox_refused == []
    assert status_of(a)[0] == 2
    commit(b, "192.0.2.21", "bee2")
    assert apply.run(b).synced == "peer-a: ok"  # b's own sync: its real journal again
    ra = apply.run(a)
    assert ra.adopted == "peer-b" and ra.inbox_refused == []
    assert names(a) == {"ay", "bee", "bee2", "sea"} and "CRITICAL" not in status_of(a)[1]


def test_linked_inbox_and_copy_directories_are_refused_and_the_others_taken(
    tmp_path: Path,
) -> None:
    cfgs = installations(tmp_path)
    a, b, c = cfgs["peer-a"], cfgs["peer-b"], cfgs["peer-c"]
    start(cfgs)
    # b's copy of its journal is a link to a journal b made up elsewhere (here: c's).
    root = evil_root(tmp_path, b)
    shutil.rmtree(root / "peer-b")
    (root / "peer-b").symlink_to(c.journal_dir / "peer-c")
    push(root, a)
    commit(c, "192.0.2.31", "sea2")
    assert apply.run(c).synced == "peer-a: ok"
    ra = apply.run(a)
    assert ra.ok and ra.adopted == "peer-c" and len(ra.inbox_refused) == 1
    assert "peer-b: a symbolic link, not a directory" in ra.inbox_refused[0]
    assert names(a) == {"ay", "bee", "sea", "sea2"}
    assert_copy_refused(a, "a symbolic link, not a directory")
    # The inbox itself a link (someone with a shell on a): refused as well.
    box = a.journal_dir / ".incoming-peer-b"
    shutil.rmtree(box)
    box.symlink_to(c.journal_dir)
    ra = apply.run(a)
    assert ra.ok and len(ra.inbox_refused) == 1
    assert ".incoming-peer-b: a symbolic link, not a directory" in ra.inbox_refused[0]
    assert journal.read_owner(a.journal_dir / "peer-b") == journal.read_owner(
        b.journal_dir / "peer-b"
    )
    box.unlink()
    assert apply.run(a).ok and "CRITICAL" not in status_of(a)[1]  # its refusal went with it


def test_a_refused_copy_is_kept_aside_without_following_a_linked_directory(
    tmp_path: Path,
) -> None:
    cfgs = installations(tmp_path)
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    start(cfgs)
    outside = tmp_path / "usr-share"
    (outside / "doc").mkdir(parents=True)
    (outside / "doc" / "big").write_bytes(b"x" * 100_000)
    root = evil_root(tmp_path, b)
    (root / "peer-b" / "tree").symlink_to(outside)
    (root / "peer-b" / "sub").mkdir()
    (root / "peer-b" / "sub" / "events-00000009.jsonl").write_text("")
    push(root, a)
    ra = apply.run(a)
    assert ra.ok and len(ra.inbox_refused) == 1
    why = ra.inbox_refused[0]
    assert "'tree': a symbolic link whose name is no journal segment's" in why
    assert "'sub': a directory whose name is no journal segment's" in why
    (k,) = kept(a)
    assert sorted(p.name for p in k.iterdir()) == [".owner", "events-00000001.jsonl", "why.txt"]
    no_special_files(k)
    assert all(p.stat().st_size < 10_000 for p in k.iterdir())


# --- 4: FIFOs and devices never hang apply nor fill memory ---------------------------------


@pytest.mark.parametrize("owner", ["fifo", "dev-zero", "dev-zero-device"])
def test_a_hostile_owner_file_never_hangs_apply_nor_fills_memory(
    owner: str, tmp_path: Path
) -> None:
    cfgs = installations(tmp_path)
    a, b, c = cfgs["peer-a"], cfgs["peer-b"], cfgs["peer-c"]
    start(cfgs)
    root = evil_root(tmp_path, b)
    own = root / "peer-b" / journal.OWNER
    own.unlink()
    if owner == "fifo":
        os.mkfifo(own)
    elif owner == "dev-zero":
        own.symlink_to("/dev/zero")
    else:
        need(os.geteuid() == 0, "a device node is made by root")
        os.mknod(own, 0o640 | stat.S_IFCHR, os.makedev(1, 5))
    journal.append(root / "peer-b", [event("peer-b", "192.0.2.23", "02:00:00:00:00:23", "never2")])
    push(root, a)
    commit(c, "192.0.2.31", "sea2")  # the honest peer's push in the same apply
    assert apply.run(c).synced == "peer-a: ok"
    done = leasedns(a, "apply", memory=1 << 30)
    assert done.returncode == 0, done.stderr
    assert names(a) == {"ay", "bee", "sea", "sea2"}
    kind = (
        "a FIFO"
        if owner == "fifo"
        else "a symbolic link"
        if owner == "dev-zero"
        else "a character device"
    )
    assert_copy_refused(a, f".owner: {kind}, not a regular file")
    no_special_files(a.state_dir / "refused")


def test_a_fifo_or_device_where_a_segment_belongs_is_never_opened(tmp_path: Path) -> None:
    with small_disk(tmp_path) as fs:  # before, the device was copied until the disk was full
        cfgs = installations(tmp_path, {"peer-a": fs})
        a, b = cfgs["peer-a"], cfgs["peer-b"]
        start(cfgs)
        root = evil_root(tmp_path, b)
        os.mkfifo(root / "peer-b" / journal.segment_name(2))
        dev = root / "peer-b" / journal.segment_name(3)
        os.mknod(dev, 0o640 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
        push(root, a)
        done = leasedns(a, "apply", memory=1 << 30)
        assert done.returncode == 0, done.stderr
        assert_copy_refused(a, "events-00000002.jsonl: a FIFO, not a regular file")
        assert "events-00000003.jsonl: a character device" in refusal(a)["peer-b/peer-b"]["problem"]
        no_special_files(a.state_dir / "refused")
        no_special_files(a.journal_dir / "peer-b")


# --- 5: bounds: segments, bytes, disk -----------------------------------------------------


def test_thousands_of_segments_are_refused_and_every_later_apply_works(tmp_path: Path) -> None:
    """A copy of 3,000 one-line segments (the attack used 20,000): before, it was taken and
    every apply then failed with "Too many open files"."""
    cfgs = installations(tmp_path)
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    start(cfgs)
    root = evil_root(tmp_path, b)
    seg = (root / "peer-b" / journal.segment_name(1)).read_bytes()
    for n in range(2, 3002):
        ev = event(
            "peer-b",
            f"198.51.100.{n % 250 + 1}",
            f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}",
            f"f{n}",
        )
        (root / "peer-b" / journal.segment_name(n)).write_text(to_line(ev))
    push(root, a)
    for _ in range(2):
        done = leasedns(a, "apply", nofile=1024)
        assert done.returncode == 0, done.stderr
    assert_copy_refused(a, f"holds more than {journal.Limits().entries} entries")
    assert [p.read_bytes() for p in journal.segments(a.journal_dir / "peer-b")] == [seg]
    assert names(a) == {"ay", "bee", "sea"}
    (k,) = kept(a)
    assert [p.name for p in k.iterdir()] == ["why.txt"]  # nothing listed past the bound


def test_a_huge_sparse_segment_is_refused_unread_and_takes_no_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path) as fs:
        cfgs = installations(tmp_path, {"peer-a": fs})
        a, b = cfgs["peer-a"], cfgs["peer-b"]
        start(cfgs)
        root = evil_root(tmp_path, b)
        seg = root / "peer-b" / journal.segment_name(2)
        seg.write_text(to_line(event("peer-b", "192.0.2.24", "02:00:00:00:00:24", "sparse")))
        os.truncate(seg, 2 << 30)  # 2 GiB, a few bytes of them written
        push(root, a)
        used = shutil.disk_usage(fs).used
        done = leasedns(a, "apply", memory=1 << 30)
        assert done.returncode == 0, done.stderr
        assert_copy_refused(a, f"events-00000002.jsonl: {2 << 30} bytes, over the bound")
        assert shutil.disk_usage(fs).used - used < 1 << 20
        assert names(a) == {"ay", "bee", "sea"}
        (k,) = kept(a)
        assert (k / journal.segment_name(2)).exists() is False


def test_a_segment_linked_to_dev_zero_never_fills_the_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path) as fs:
        cfgs = installations(tmp_path, {"peer-a": fs})
        a, b = cfgs["peer-a"], cfgs["peer-b"]
        start(cfgs)
        root = evil_root(tmp_path, b)
        (root / "peer-b" / journal.segment_name(2)).symlink_to("/dev/zero")
        push(root, a)
        used = shutil.disk_usage(fs).used
        done = leasedns(a, "apply", memory=1 << 30)
        assert done.returncode == 0, done.stderr
        assert_copy_refused(a, "events-00000002.jsonl: a symbolic link, not a regular file")
        assert shutil.disk_usage(fs).used - used < 1 << 20


@pytest.mark.parametrize("bound", [None, 4 << 20])
def test_copies_kept_aside_stay_within_their_count_and_bytes(
    bound: int | None, tmp_path: Path
) -> None:
    """Six inboxes refused (copies that name no owner), each holding 1.5 MiB: at most
    REFUSED_KEPT copies and journal.max_bytes stay aside; the latest always does."""
    cfgs = installations(tmp_path, **({"journal": {"max_bytes": bound}} if bound else {}))
    a = cfgs["peer-a"]
    start(cfgs)
    line = to_line(event("peer-x", "192.0.2.25", "02:00:00:00:00:25", "x" * 1000)).encode()
    for sender in ("peer-d", "peer-e", "peer-f", "peer-g", "peer-h", "peer-i"):
        root = tmp_path / f"evil-{sender}"
        (root / sender).mkdir(parents=True)
        blob = line.replace(b'"peer-x"', f'"{sender}"'.encode()) * (1536 * 1024 // len(line))
        (root / sender / journal.segment_name(1)).write_bytes(blob)
        push(root, a, sender)
        ra = apply.run(a)
        assert ra.ok and len(ra.inbox_refused) == 1 and "names no owner" in ra.inbox_refused[0]
        held = kept(a)
        assert len(held) <= 4  # README: "4 in all" (inbox.REFUSED_KEPT)
        kept_bytes = sum(f.stat().st_size for d in held for f in d.iterdir())
        assert kept_bytes <= (bound or 256 << 20)  # journal.max_bytes, set or default
        latest = max(held, key=lambda d: int(d.name.rpartition("-")[2]))
        assert sender in latest.name  # the latest is always kept
        assert (latest / journal.segment_name(1)).read_bytes() == blob
    assert len(kept(a)) == (2 if bound else 4)
    assert len(refusal(a)) == 6  # every refusal is still reported
    assert status_of(a)[1].count("CRITICAL: inbox") == 6


def test_a_copy_over_the_journal_bound_is_refused(tmp_path: Path) -> None:
    cfgs = installations(tmp_path, journal={"max_bytes": 4 << 20})
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    start(cfgs)
    root = evil_root(tmp_path, b)
    line = to_line(event("peer-b", "192.0.2.26", "02:00:00:00:00:26", "y" * 1000)).encode()
    for n in (2, 3, 4):
        (root / "peer-b" / journal.segment_name(n)).write_bytes(line * (1536 * 1024 // len(line)))
    push(root, a)
    ra = apply.run(a)
    assert ra.ok and ra.adopted == ""
    assert_copy_refused(a, "bytes of segments, over journal.max_bytes (4194304)")
    assert journal.sizes(a.journal_dir / "peer-b") == journal.sizes(b.journal_dir / "peer-b")


# --- 6: a partner cannot write this peer's history ------------------------------------------


def test_a_partner_cannot_add_events_to_this_peers_journal(tmp_path: Path) -> None:
    cfgs = installations(tmp_path)
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    commit(a, "192.0.2.11", "laptop")
    commit(a, "192.0.2.12", "printer")
    assert apply.run(a).synced == "peer-b: ok"
    assert apply.run(b).adopted == "peer-a"
    before = (a.journal_dir / "peer-a" / journal.segment_name(1)).read_bytes()
    # b adds two events to its copy of a's journal, in a's name: the laptop moved to another
    # address under another MAC, the printer released. Then its ordinary sync pushes them.
    copy = b.journal_dir / "peer-a" / journal.segment_name(1)
    forged = [
        event("peer-a", "192.0.2.99", "02:00:00:00:00:99", "laptop"),
        event("peer-a", "192.0.2.12", "02:00:00:00:0c:01", "", Kind.RELEASE),
    ]
    with copy.open("a") as f:
        f.write("".join(to_line(e) for e in forged))
        # a line copied from a's journal with a field changed keeps its old signature
        mine = json.loads(before.splitlines()[0])
        mine["ip"] = "192.0.2.98"
        f.write(json.dumps(mine, sort_keys=True, separators=(",", ":")) + "\n")
    assert syncing.run(b)[0].ok
    ra = apply.run(a)
    assert ra.ok and ra.recovered == 0 and len(ra.inbox_refused) == 1
    why = ra.inbox_refused[0]
    assert "holds 3 event(s) of peer-a this journal lacks that carry no valid signature" in why
    assert "commit 192.0.2.99 02:00:00:00:00:99" in why
    assert (a.journal_dir / "peer-a" / journal.segment_name(1)).read_bytes() == before
    assert names(a) == {"laptop", "printer"}
    code, text = status_of(a)
    assert code == 2 and "CRITICAL: inbox peer-b/peer-a" in text and "no valid signature" in text
    (k,) = kept(a)
    assert k.name.startswith("peer-b.peer-a-") and b"192.0.2.99" in (k / copy.name).read_bytes()
    # and nothing of it reaches b's partners: a's journal, pushed back, is a's own
    assert syncing.run(a)[0].ok and b"192.0.2.99" not in all_bytes(
        b.journal_dir / ".incoming-peer-a" / "peer-a"
    )


def test_own_events_lost_are_recovered_only_when_signed(tmp_path: Path) -> None:
    """A restored backup: the events signed since come back; one written before lines were
    signed (here: a line without `sig`) cannot be told from a forgery and is reported."""
    cfgs = installations(tmp_path)
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    own = a.journal_dir / "peer-a"
    old = event("peer-a", "192.0.2.13", "02:00:00:00:00:13", "old-client")
    journal.append(own, [old])  # as a leasedns before signing wrote it
    commit(a, "192.0.2.14", "signed-client")
    assert apply.run(a).synced == "peer-b: ok"
    assert apply.run(b).adopted == "peer-a"
    assert [
        ("sig" in json.loads(x)) for x in (own / journal.segment_name(1)).read_text().splitlines()
    ] == [False, True]
    # a's journal is lost (its state restored from an empty backup, same installation)
    (own / journal.segment_name(1)).unlink()
    ra = apply.run(a, force=True)
    assert ra.ok and ra.recovered == 1 and len(ra.inbox_refused) == 1
    assert (
        "holds 1 event(s) of peer-a this journal lacks that carry no valid signature"
        in ra.inbox_refused[0]
    )
    assert "commit 192.0.2.13 02:00:00:00:00:13" in ra.inbox_refused[0]
    assert [e.client_name for e in journal.read_peer(own).events] == ["signed-client"]


# --- 7: segment names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "events-00000005.jsonl\n",
        "events-\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0666.jsonl",  # Arabic-Indic digits
        "events-\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff17.jsonl",  # fullwidth digits
        "events-5.jsonl",
    ],
)
def test_a_name_no_segment_has_is_refused_and_never_read(name: str, tmp_path: Path) -> None:
    cfgs = installations(tmp_path)
    a, b = cfgs["peer-a"], cfgs["peer-b"]
    start(cfgs)
    root = evil_root(tmp_path, b)
    (root / "peer-b" / name).write_text(
        to_line(event("peer-b", "192.0.2.27", "02:00:00:00:00:27", "odd"))
    )
    push(root, a)
    ra = apply.run(a)
    assert ra.ok and ra.adopted == "" and len(ra.inbox_refused) == 1
    assert f"{name!a}: a regular file whose name is no journal segment's" in ra.inbox_refused[0]
    assert names(a) == {"ay", "bee", "sea"}
    assert_copy_refused(a, "whose name is no journal segment's")


# --- shared storage: partners write journal/<peer>/ directly -----------------------------


def shared(tmp: Path) -> tuple[config.Config, Path]:
    """peer-a reading a journal root that peer-b writes too (shared storage)."""
    tool("tinydns-data")
    (tmp / "a").mkdir()
    a = config.load(str(write_config(tmp / "a", journal_dir=str(tmp / "shared"))))
    apply.ensure_dirs(a)
    commit(a, "192.0.2.10", "ay")
    other = a.journal_dir / "peer-b"
    journal.append(other, [event("peer-b", "192.0.2.20", "02:00:00:00:00:20", "bee")])
    assert apply.run(a).ok and names(a) == {"ay", "bee"}
    return a, other


def test_a_shared_journal_of_many_segments_is_read_with_few_files_open(tmp_path: Path) -> None:
    a, other = shared(tmp_path)
    for n in range(2, 202):  # 200 one-line segments, within the bounds
        ev = event("peer-b", f"192.0.2.{n + 28}", f"02:00:00:00:01:{n:02x}", f"s{n}")
        (other / journal.segment_name(n)).write_text(to_line(ev))
    for _ in range(2):  # cold, then with the merge state
        (a.state_dir / "merge-state.sqlite").unlink(missing_ok=True)
        done = leasedns(a, "apply", nofile=64)
        assert done.returncode == 0, done.stderr
    assert len(names(a)) == 202
    ev = event("peer-b", "192.0.2.250", "02:00:00:00:02:01", "later")
    (other / journal.segment_name(300)).write_text(to_line(ev))
    done = leasedns(a, "apply", nofile=64)  # incremental
    assert done.returncode == 0, done.stderr
    assert "later" in names(a)


def test_links_and_fifos_in_a_shared_journal_are_never_read(tmp_path: Path) -> None:
    a, other = shared(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text(to_line(event("peer-b", "192.0.2.66", "02:00:00:00:00:66", "leaked")))
    (other / journal.segment_name(2)).symlink_to(secret)
    os.mkfifo(other / journal.segment_name(3))
    done = leasedns(a, "apply")
    assert done.returncode == 0, done.stderr
    assert names(a) == {"ay", "bee"}
    code, text = status_of(a)
    assert code == 1
    assert "events-00000002.jsonl: a symbolic link, not a regular file" in text
    assert "events-00000003.jsonl: a FIFO, not a regular file" in text
    # this peer's own .owner made a FIFO: apply fails at once, saying so, never hangs
    own = a.journal_dir / "peer-a" / journal.OWNER
    own.unlink()
    os.mkfifo(own)
    commit(a, "192.0.2.15", "waits")
    done = leasedns(a, "apply")
    assert done.returncode == 1
    code, text = status_of(a)
    assert code == 2 and ".owner: a FIFO, not a regular file" in text
    assert len(list(a.spool_dir.glob("ev-*"))) == 1  # kept until it is fixed
