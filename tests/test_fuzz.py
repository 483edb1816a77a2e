"""Fuzzing with hypothesis: real hook + apply + tinydns-data, the config and lease parsers.

Bounded by default so that `make test` stays fast (the whole file runs in well under a minute).
A longer run scales every budget by one environment variable, e.g.

    LEASEDNS_FUZZ_EXAMPLES=2000 PATH=$PATH:/usr/sbin .venv/bin/pytest -q tests/test_fuzz.py

(the hook fuzz then runs 2000 examples, the pure parsers proportionally more).

What the hook fuzz asserts for every batch of hostile hook calls (arbitrary bytes as names,
malformed IPs and MACs, 100 KB arguments, 0-9 arguments, unknown events, odd lease lengths):
the hook exits 0 quickly with nothing on stderr; one apply leaves nothing in the spool; every
spool file became either a journal event or a file in spool/rejected/ with a .reason beside it
and a log record naming it (files in = journaled + rejected); apply reports ok and compiled
data.cdb with the real tinydns-data; the data file holds the static data verbatim and otherwise
only lines `=LABEL.lab.example:IP:0:TAI64` (`:300` for an infinite lease) with LABEL in
[a-z0-9-] and IP inside 192.0.2.0/24; every live binding is either published or refused
with a `lease IP MAC (peer ...): name not published: ...` log line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from helpers import HOOK, ROOT, ZONES, tool, write_config
from leasedns import config, journal
from leasedns.commands import apply
from leasedns.errors import ConfigError, ParseError
from leasedns.model import Settings, parse_time
from leasedns.outputs.tinydns import DYNAMIC_MARK, HEADER, HOSTS_MARK, STATIC_MARK
from leasedns.sources import spool, statics
from leasedns.sources.dhcpd import leases
from oracle import merge

SCALE = int(os.environ.get("LEASEDNS_FUZZ_EXAMPLES", "0") or 0)


def budget(default: int, factor: int = 1) -> int:
    """max_examples: the default, or LEASEDNS_FUZZ_EXAMPLES (times `factor` for cheap tests)."""
    return SCALE * factor if SCALE > 0 else default


FUZZ = settings(
    deadline=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

SUBNET = ipaddress.IPv4Network("192.0.2.0/24")
DOMAIN = "lab.example"
HOOK_SECS = 3.0  # generous: the hook itself takes ~2 ms, the machine is shared

# --- strategies for the hook's arguments -------------------------------------------------------


class Huge(bytes):
    """A long argument that hypothesis and pytest show by its size, not its 100 KB."""

    def __repr__(self) -> str:
        return f"Huge({bytes(self[:12])!r} ... {len(self)} bytes)"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # type: ignore[no-untyped-def]
        p.text(repr(self))


no_nul = st.binary(max_size=200).map(lambda b: b.replace(b"\0", b""))

HOSTILE_NAMES = [
    b"",
    b"www",
    b"ns",
    b"lab.example",
    b"lab.example.",
    b"LAB.EXAMPLE",
    b".",
    b"..",
    b"-",
    b"_",
    b"a" * 63,
    b"a" * 64,
    b"a." * 130,
    b"x.lab.example.lab.example",
    b"evil.2.0.192.in-addr.arpa.",
    b"1.2.0.192.in-addr.arpa",
    b"evil:1.2.3.4\n=x.lab.example:6.6.6.6",
    b"+x.lab.example:6.6.6.6",
    b"\xff\xfe\xfd",
    b"caf\xc3\xa9",
    b"\xe2\x80\x8bzw",
    b"laptop_7 ",
    b"-lead",
    b"trail-",
    b"a\\072b",
    b"\\012",
    b"%x",
    b"'q' $(reboot) `id`",
    b"\n",
    b"\r\n",
    b"#comment",
    b"*",
    b"xn--bcher-kva",
    b"ns.lab.example",
    b"foo.example.com.",
    b"\t\x7f\x01",
]
huge = st.sampled_from(
    [
        Huge(b"a" * 100_000),
        Huge(b"\xff" * 100_000),
        Huge(b"a." * 50_000),
        Huge(b"x" * 65_400),
        Huge(b"=e:1.2.3.4\n" * 9_000),
    ]
)
name_arg = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    no_nul,
    st.text(
        alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=80
    ).map(lambda s: s.encode("utf-8")),
    st.text(alphabet="abcXYZ019-_. :\\\n", max_size=70).map(str.encode),
    huge,
)

in_subnet = st.integers(0, 255).map(lambda n: f"192.0.2.{n}".encode())
outside = st.builds(
    lambda a, b: f"198.51.{a}.{b}".encode(), st.integers(0, 255), st.integers(0, 255)
)
MALFORMED_IPS = [
    b"",
    b"192.0.2.256",
    b"192.0.2",
    b"192.0.2.1.5",
    b"192.0.2.01",
    b" 192.0.2.1",
    b"192.0.2.1\n",
    b"0x7f.0.0.1",
    b"::1",
    b"2001:db8::1",
    b"192.0.2.-1",
    b"192.0.2.1/24",
    b"\xff.0.2.1",
    b"1e2.0.2.1",
    b"\xd9\xa1.0.2.1",
    b"localhost",
]
ip_arg = st.one_of(in_subnet, in_subnet, outside, st.sampled_from(MALFORMED_IPS), no_nul)


@st.composite
def mac_ok(draw: st.DrawFn) -> bytes:
    octets = draw(st.lists(st.integers(0, 255), min_size=6, max_size=6))
    sep = draw(st.sampled_from([":", "-"]))
    short = draw(st.booleans())
    upper = draw(st.booleans())
    text = sep.join(f"{o:x}" if short else f"{o:02x}" for o in octets)
    return (text.upper() if upper else text).encode()


MALFORMED_MACS = [
    b"",
    b"zz",
    b"2:0:0:0:1",
    b"2:0:0:0:1:a:b",
    b"02:00:00:00:01:100",
    b"02:00:00:00:01:0g",
    b"02.00.00.00.01.0a",
    b"020000000100",
    b" 2:0:0:0:1:a",
    b"2:0:0:0:1:a ",
    b"2::0:0:1:a",
    b"\xff:0:0:0:1:a",
]
mac_arg = st.one_of(mac_ok(), mac_ok(), st.sampled_from(MALFORMED_MACS), no_nul)

kind_arg = st.one_of(
    st.sampled_from([b"commit"] * 4 + [b"release", b"expiry"]),
    st.sampled_from([b"COMMIT", b"commit ", b"", b"renew", b"expire", b"del"]),
    no_nul,
)

ODD_SECS = [
    b"",
    b"0",
    b"1",
    b"-1",
    b"+600",
    b"1e3",
    b"0x10",
    b" 600",
    b"600 ",
    b"600s",
    b"4294967295",
    b"4294967296",
    b"99999999999",
    b"\xd9\xa3",
    b"600.5",
    b"00600",
]
secs_arg = st.one_of(
    st.integers(0, 2**32 + 5).map(lambda n: str(n).encode()), st.sampled_from(ODD_SECS), no_nul
)


@st.composite
def hook_argv(draw: st.DrawFn) -> list[bytes]:
    """Six arguments usually; sometimes fewer (0-5) or more (7-9).

    Half are well-formed events whose only hostile parts are the names (so that names do get
    published and refused), the other half have any field malformed.
    """
    if draw(st.booleans()):
        argv = [
            draw(st.sampled_from([b"commit"] * 5 + [b"release", b"expiry"])),
            draw(st.one_of(in_subnet, in_subnet, in_subnet, outside)),
            draw(mac_ok()),
            draw(name_arg),
            draw(st.one_of(st.just(b""), st.just(b""), name_arg)),
            draw(
                st.one_of(
                    st.integers(1, 10**6).map(lambda n: str(n).encode()),
                    st.sampled_from([b"", b"0", b"4294967295"]),
                )
            ),
        ]
        return argv
    argv = [
        draw(kind_arg),
        draw(ip_arg),
        draw(mac_arg),
        draw(name_arg),
        draw(name_arg),
        draw(secs_arg),
    ]
    shape = draw(st.integers(0, 9))
    if shape == 0:
        argv = argv[: draw(st.integers(0, 5))]
    elif shape == 1:
        argv += draw(st.lists(name_arg, min_size=1, max_size=3))
    return argv


# --- an oracle for which events must be accepted, which rejected --------------------------------

_DOTTED = re.compile(
    rb"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
_MAC = re.compile(rb"[0-9a-fA-F]{1,2}(?:[:-][0-9a-fA-F]{1,2}){5}")
_SECS = re.compile(rb"[0-9]{1,10}")


def verdict(argv: list[bytes]) -> bool | None:
    """True: a valid event (must be journaled); False: must be rejected; None: either is fine
    (a trailing newline that a lenient parser may strip)."""
    if len(argv) != 6:
        return False
    kind, ip, mac, _name, _host, secs = argv
    if kind not in (b"commit", b"release", b"expiry"):
        return False
    loose = [ip, mac, secs]
    if any(x.endswith(b"\n") for x in loose):
        return None
    if not _DOTTED.fullmatch(ip) or not _MAC.fullmatch(mac):
        return False
    return not secs or (_SECS.fullmatch(secs) is not None and int(secs) <= 0xFFFFFFFF)


# --- helpers -----------------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured_log() -> Iterator[ListHandler]:
    """The `leasedns` logger's records (attached directly: a CLI test earlier in the session may
    have turned its propagation to the root logger, and so caplog, off)."""
    logger = logging.getLogger("leasedns")
    h = ListHandler()
    old_level = logger.level
    logger.addHandler(h)
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield h
    finally:
        logger.removeHandler(h)
        logger.setLevel(old_level)


def run_hook(
    spool_dir: Path, argv: list[bytes]
) -> tuple[subprocess.CompletedProcess[bytes], float]:
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(spool_dir), "LEASEDNS_NO_APPLY": "1"}
    t0 = time.monotonic()
    p = subprocess.run(
        [str(HOOK), *argv], env=env, capture_output=True, timeout=30, stdin=subprocess.DEVNULL
    )
    return p, time.monotonic() - t0


# A lease with an end dies at it (ttl 0 + TAI64); an infinite one gets the static ttl.
DYN_LINE = re.compile(r"=([a-z0-9-]+)\.lab\.example:([0-9.]+):(?:0:[0-9a-f]{16}|300)")


def check_data(cfg: config.Config) -> list[tuple[str, str]]:
    """The data file is static data + only well-formed dynamic lines; returns (fqdn, ip)."""
    root = cfg.tinydns_root
    data = (root / "data").read_text(encoding="utf-8", errors="surrogateescape")
    assert (root / "data.cdb").stat().st_mtime_ns >= (root / "data").stat().st_mtime_ns
    head = HEADER + STATIC_MARK + ZONES + HOSTS_MARK + DYNAMIC_MARK
    assert data.startswith(head), data[:500]
    out = []
    for line in data[len(head) :].splitlines():
        m = DYN_LINE.fullmatch(line)
        assert m, f"unexpected data line {line!r}"
        label, ip = m.groups()
        assert len(label) <= 63 and not label.startswith("-") and not label.endswith("-"), line
        assert ipaddress.IPv4Address(ip) in SUBNET, line
        fq = f"{label}.{DOMAIN}"
        assert re.fullmatch(r"[a-z0-9-]+\.lab\.example", fq)
        out.append((fq, ip))
    event(f"published names: {min(len(out), 3)}{'+' if len(out) >= 3 else ''}")
    names = [n for n, _ in out]
    ips = [i for _, i in out]
    assert len(set(names)) == len(names), "one A per dynamic name"
    assert len(set(ips)) == len(ips), "one PTR per address"
    return out


def tinydns_a(root: Path, name: str) -> list[str]:
    p = subprocess.run(
        [tool("tinydns-get"), "a", name],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return sorted(
        line.split()[-1]
        for line in p.stdout.splitlines()
        if line.startswith("answer:") and " A " in line
    )


# --- 1. the hook and apply, end to end ----------------------------------------------------------


@pytest.mark.integration
@settings(FUZZ, max_examples=budget(60))
@given(batch=st.lists(hook_argv(), min_size=1, max_size=8))
@example(batch=[[b"commit", b"192.0.2.10", b"2:0:0:0:0:1", Huge(b"a" * 100_000), b"", b"600"]])
@example(
    batch=[
        [b"commit", b"192.0.2.11", b"2:0:0:0:0:2", b"ok", Huge(b"x" * 70_000), b"600"],
        [b"commit", b"192.0.2.12", b"2:0:0:0:0:3", b"fine", b"", b"600"],
    ]
)
@example(
    batch=[
        [],
        [b"commit"],
        [b"commit", b"192.0.2.1", b"2:0:0:0:0:1", b"a", b"", b"60", b"x"],
        [b"renew", b"192.0.2.1", b"2:0:0:0:0:1", b"a", b"", b"60"],
        [b"commit", b"192.0.2.999", b"2:0:0:0:0:1", b"a", b"", b"60"],
        [b"commit", b"192.0.2.1", b"zz", b"a", b"", b"60"],
        [b"commit", b"192.0.2.1", b"2:0:0:0:0:1", b"a", b"", b"-1"],
        [b"commit", b"192.0.2.2", b"2:0:0:0:0:2", b"www", b"", b"0"],
    ]
)
def test_hook_then_apply_never_loses_or_publishes_garbage(batch: list[list[bytes]]) -> None:
    tool("tinydns-data")
    with tempfile.TemporaryDirectory(prefix="leasedns-fuzz-") as d:
        tmp = Path(d)
        cfg = config.load(
            str(write_config(tmp, subnets=[str(SUBNET)], names={"protected": ["www"]}))
        )
        apply.ensure_dirs(cfg)
        spooled: dict[str, list[bytes]] = {}
        for argv in batch:
            before = set(os.listdir(cfg.spool_dir))
            p, secs = run_hook(cfg.spool_dir, argv)
            assert p.returncode == 0 and p.stderr == b"", (p.returncode, p.stderr[:300])
            assert secs < HOOK_SECS, f"hook took {secs:.2f} s"
            (new,) = set(os.listdir(cfg.spool_dir)) - before - {spool.DUE_FLAG}
            spooled[new] = argv
        assert not (cfg.spool_dir / spool.DUE_FLAG).exists()  # LEASEDNS_NO_APPLY: no trigger

        with captured_log() as logged:
            report = apply.run(cfg)
        assert report.ok and report.error == "", report.error
        assert report.compiled

        # Nothing silently dropped: every spool file is journaled or rejected, at once.
        left = [p.name for p in cfg.spool_dir.iterdir() if p.name.startswith(spool.PREFIX)]
        assert left == [], (
            f"left in the spool after apply (waiting {report.waiting}): "
            + ", ".join(f"{n} ({len(b''.join(spooled[n]))} bytes of arguments)" for n in left)
        )
        rejected_dir = cfg.spool_dir / spool.REJECTED
        rejected = (
            sorted(p.name for p in rejected_dir.iterdir() if not p.name.endswith(".reason"))
            if rejected_dir.exists()
            else []
        )
        events = journal.read_peer(cfg.journal_dir / cfg.peer).events
        assert len(events) == report.ingested
        assert len(batch) == len(events) + len(rejected) == report.ingested + report.rejected

        event(f"rejected: {'some' if rejected else 'none'}")
        for name in rejected:
            reason = (rejected_dir / (name + ".reason")).read_text()
            assert reason.strip(), name
            assert name in spooled
            assert any(f"rejected spool event {name}:" in m for m in logged.messages), name
            assert verdict(spooled[name]) is not True, (spooled[name], reason)
        for name, argv in spooled.items():
            if verdict(argv) is False:
                assert name in rejected, f"invalid event {argv!r} was journaled"

        # The published data: static data verbatim, then only clean names inside the subnet.
        published = check_data(cfg)

        # Every live binding is published or refused with a log line naming IP and MAC.
        now = parse_time(report.time) // 1_000_000
        result = merge(events, statics.load(cfg), Settings.from_config(cfg), now)
        assert sorted(published) == sorted((n, ip) for ip, n in result.published.items())
        refused = {id(r.binding): r.reason for r in result.refusals}
        for b in result.bindings:
            if b.ip in result.published:
                continue
            assert id(b) in refused, f"binding {b} neither published nor refused"
            line = f"lease {b.ip} {b.mac} (peer {b.peer}): name not published: {refused[id(b)]}"
            assert line in logged.messages, (line, logged.messages)
        for b in result.bindings:
            assert b.commit in events

        # The compiled data.cdb answers: ask tinydns-get for one published name.
        if published:
            fq, ip = published[0]
            assert tinydns_a(cfg.tinydns_root, fq) == [ip]


@pytest.mark.integration
@settings(FUZZ, max_examples=budget(20))
@given(argv=hook_argv())
def test_hook_with_an_unusable_spool_fails_fast_and_says_so(argv: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="leasedns-fuzz-") as d:
        missing = Path(d) / "no-such-spool"
        p, secs = run_hook(missing, argv)
        assert secs < HOOK_SECS
        assert p.returncode == 1
        assert p.stderr.startswith(b"leasedns dhcpd-event: cannot create an event file in ")
        assert p.stderr.endswith(b" not recorded\n")
        assert not missing.exists()


# --- 2. the config parser -----------------------------------------------------------------------

CFG_PATH = "x.yaml"
CONF_TEXT = (ROOT / "conf" / "leasedns.yaml").read_text()
CONFIG_ERROR = re.compile(r"x\.yaml:(\d+): \S")


def check_config(text: str) -> None:
    try:
        config.parse(text, CFG_PATH)
    except ConfigError as e:
        msg = str(e)
        m = CONFIG_ERROR.match(msg)
        assert m, f"ConfigError without file:line: {msg!r}"
        assert 1 <= int(m.group(1)) <= text.count("\n") + 2, msg


KEYS = [
    "peer",
    "domain",
    "state_dir",
    "spool_dir",
    "journal_dir",
    "subnets",
    "ttl",
    "names",
    "reverse",
    "default_lease_secs",
    "tinydns",
    "dhcpd",
    "build",
    "journal",
    "sync",
    "check",
    "policy",
    "conflict",
    "protected",
    "root",
    "data_program",
    "static",
    "conf",
    "leases",
    "static_name",
    "coalesce_secs",
    "guard_fraction",
    "guard_min",
    "clock_skew_secs",
    "partners",
    "name",
    "rsync_target",
    "notify",
    "servers",
    "timeout_secs",
    "rsync_args",
    "max_lease_secs",
    "compact_grace_secs",
    "bogus",
]
SCALARS = [
    "a",
    "lab.example",
    "192.0.2.0/24",
    "0",
    "-1",
    "1.5",
    "1e400",
    ".nan",
    ".inf",
    "true",
    "no",
    "null",
    "~",
    "''",
    '""',
    "2024-01-01",
    "0x10",
    "0o7",
    "!!str 5",
    "!!int 5",
    "!!float x",
    "!!binary zz",
    "!!bool maybe",
    "!!timestamp x",
    "!!python/name:os.system",
    "&a x",
    "*a",
    "*undefined",
    "|",
    ">",
    "[",
    "]",
    "{",
    "}",
    "'unterminated",
    '"\\xzz"',
    "newest",
    "strict",
    "first",
    "sanitize",
    "1.2.3.4",
    "::1",
    "%",
    "@",
    "`",
    "a: b: c",
    "- x",
    "? x",
    "!",
    "!!map",
    "!!seq",
    "\\t",
    "ünï",
    "\t",
]


@st.composite
def yamlish(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        indent = " " * draw(st.sampled_from([0, 0, 2, 4, 1, 3]))
        key = draw(st.sampled_from(KEYS))
        form = draw(st.integers(0, 5))
        val = draw(st.sampled_from(SCALARS) | st.text(max_size=12))
        if form == 0:
            lines.append(f"{indent}{key}:")
        elif form == 1:
            lines.append(f"{indent}- {val}")
        elif form == 2:
            lines.append(f"{indent}{key}: [{val}, {draw(st.sampled_from(SCALARS))}]")
        elif form == 3:
            lines.append(f"{indent}{key}: {{{key}: {val}}}")
        else:
            lines.append(f"{indent}{key}: {val}")
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@st.composite
def mutated(draw: st.DrawFn, base: str, alphabet: st.SearchStrategy[str]) -> str:
    """A few random edits of `base`: delete, insert, replace, duplicate, truncate."""
    text = base
    for _ in range(draw(st.integers(1, 6))):
        n = len(text)
        op = draw(st.integers(0, 5))
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 200)))
        if op == 0:
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + draw(alphabet) + text[i:]
        elif op == 2:
            text = text[:i] + draw(alphabet) + text[j:]
        elif op == 3:
            text = text[:j] + text[i:j] + text[j:]
        elif op == 4:
            text = text[:i]
        else:  # swap two lines
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


cfg_alphabet = st.one_of(
    st.text(max_size=8),
    st.sampled_from(SCALARS),
    st.sampled_from([":", " ", "\n", "  ", "-", "#", "'", '"', "[", "{", "\t"]),
)

# Inputs found by the fuzzers, kept so that they are tried on every run.
CONFIG_FOUND = [
    "\x07",  # yaml ReaderError
    "peer: a\x00\ndomain: x.example\n",  # yaml ReaderError (NUL)
    "peer: !!binary zz\ndomain: x.example\n",  # yaml ConstructorError in _scalar
    "peer: a\ndomain: x.example\nttl: !!int abc\n",  # ValueError in _scalar
    "peer: a\ndomain: x.example\nreverse: !!bool maybe\n",
    "[" * 2000,  # RecursionError in yaml.compose
    "0: {0\r\r",  # YAML counts a lone CR as a line break; file:line must count newlines
    "0:\r\r{",
]


@pytest.mark.parametrize(
    "text", CONFIG_FOUND, ids=[f"{i}-{t[:16]!r}" for i, t in enumerate(CONFIG_FOUND)]
)
def test_config_found_inputs_raise_only_config_error(text: str) -> None:
    check_config(text)


@settings(FUZZ, max_examples=budget(300, 5))
@given(text=st.one_of(st.text(max_size=300), yamlish(), mutated(CONF_TEXT, cfg_alphabet)))
def test_config_parse_raises_only_config_error_with_file_and_line(text: str) -> None:
    check_config(text)


# --- 3. the lease parser ------------------------------------------------------------------------

LEASE_DIR = ROOT / "tests" / "data" / "leases"
FIXTURES = {p.name: p.read_bytes().decode("latin-1") for p in sorted(LEASE_DIR.glob("*.leases"))}
LEASE_WORDS = [
    "lease",
    "192.0.2.1",
    "{",
    "}",
    ";",
    "\n",
    "starts",
    "ends",
    "cltt",
    "tstp",
    "binding state",
    "next binding state",
    "rewind binding state",
    "active",
    "free",
    "backup",
    "hardware ethernet",
    "02:00:00:00:00:01",
    "uid",
    '"\\001\\002"',
    "client-hostname",
    '"a\\"b"',
    "set",
    "=",
    "on",
    "expiry",
    "host",
    "failover peer",
    "state",
    "my state",
    "partner state",
    "mclt",
    "ia-na",
    "iaaddr",
    "never",
    "4 2024/01/01 00:00:00",
    "epoch 1700000000",
    "6 2038/01/19 03:14:08",
    "#",
    "\\",
    '"',
    "abandoned",
    "deleted",
    "dynamic",
    "fixed-address",
    "option",
    "agent.circuit-id",
    "authoring-byte-order",
    "server-duid",
    "\x00",
    "\xff",
    "\r\n",
    " ",
    "\t",
    "9" * 30,
]
lease_alphabet = st.one_of(
    st.sampled_from(LEASE_WORDS), st.binary(max_size=12).map(lambda b: b.decode("latin-1"))
)


def check_leases(text: str, tmp: Path | None = None) -> None:
    path = "fuzz.leases"
    lf = leases.parse_leases(text, path)
    assert isinstance(lf, leases.LeaseFile)
    lines = text.count("\n") + 2
    for p in lf.problems:
        assert isinstance(p, ParseError) and p.path == path
        assert str(p).startswith(f"{path}:{p.line}: ") and 1 <= p.line <= lines, str(p)
    for lease in lf.leases:
        ipaddress.IPv4Address(lease.ip)
        assert lease.path == path and 1 <= lease.line <= lines
    if tmp is not None:  # the chunked file reader finds the same
        f = tmp / path
        f.write_bytes(text.encode("latin-1"))
        lf2 = leases.read_leases(str(f))
        assert [x._replace(path=path) for x in lf2.leases] == list(lf.leases)
        assert [(p.line, p.problem) for p in lf2.problems] == [
            (p.line, p.problem) for p in lf.problems
        ]


@settings(FUZZ, max_examples=budget(300, 5))
@given(
    text=st.one_of(
        st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
        st.lists(lease_alphabet, max_size=60).map("".join),
        st.sampled_from(sorted(FIXTURES)).flatmap(lambda n: mutated(FIXTURES[n], lease_alphabet)),
        st.lists(st.sampled_from(sorted(FIXTURES)), min_size=2, max_size=3)
        .map(lambda ns: "".join(FIXTURES[n] for n in ns))
        .flatmap(lambda t: mutated(t, lease_alphabet)),
    )
)
def test_parse_leases_never_raises_and_places_problems(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="leasedns-fuzz-") as d:
        check_leases(text, Path(d))
