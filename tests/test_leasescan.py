"""The C scanner (_leasescan) against the pure-Python parser: the same LeaseFile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import need
from leasedns import cli
from leasedns.sources.dhcpd import leases
from leasedns.sources.dhcpd.leases import Lease, LeaseFile, parse_leases, read_leases

DATA = Path(__file__).parent / "data" / "leases"
FIXTURES = sorted(DATA.glob("*.leases"))


def _have_c() -> bool:
    try:
        import leasedns.sources.dhcpd._leasescan  # noqa: F401
    except ImportError:
        return False
    return True


def need_c() -> None:
    need(
        _have_c() and leases._scan is not None,
        "the C accelerator leasedns.sources.dhcpd._leasescan is not built (no compiler or "
        "Python headers when installed; `make venv` builds it) or LEASEDNS_PURE_PYTHON is set",
    )


@contextmanager
def pure_python() -> Iterator[None]:
    saved = leases._scan
    leases._scan = None
    try:
        yield
    finally:
        leases._scan = saved


@contextmanager
def chunk(size: int) -> Iterator[None]:
    saved = leases._CHUNK
    leases._CHUNK = size
    try:
        yield
    finally:
        leases._CHUNK = saved


def assert_same(c: LeaseFile, py: LeaseFile) -> None:
    assert c.leases == py.leases
    # equal is not enough: True == 1 and an int subclass == int; the types must match too
    assert [tuple(map(type, x)) for x in c.leases] == [tuple(map(type, x)) for x in py.leases]
    assert all(type(x) is Lease for x in c.leases)
    # ParseError is an exception: compare what it says
    assert [(p.path, p.line, str(p)) for p in c.problems] == [
        (p.path, p.line, str(p)) for p in py.problems
    ]
    assert c.hosts == py.hosts
    assert c.failover_states == py.failover_states
    assert c.ia_blocks == py.ia_blocks
    assert c.path == py.path


def both_ways(text: str, tmp: Path | None = None, chunks: tuple[int, ...] = ()) -> LeaseFile:
    """Parse `text` with the C scanner and in pure Python, as a str and from a file read in
    chunks of each size given; every pair must agree."""
    c = parse_leases(text, "t.leases")
    with pure_python():
        py = parse_leases(text, "t.leases")
    assert_same(c, py)
    if tmp is not None:
        f = tmp / "t.leases"
        f.write_bytes(text.encode("latin-1"))
        for size in chunks:
            with chunk(size):
                c = read_leases(str(f))
                with pure_python():
                    py = read_leases(str(f))
            assert_same(c, py)
    return c


# --- built, and which path runs ---------------------------------------------------------------


def test_extension_is_built():
    """`make venv` builds it where gcc and the Python headers are (CI has both)."""
    need_c()
    assert leases.PARSER == "C, leasedns.sources.dhcpd._leasescan"


def test_lease_fields_are_in_the_order_the_c_code_fills_them():
    # the enum at the top of _leasescan.c
    assert Lease._fields == (
        "ip",
        "starts",
        "ends",
        "cltt",
        "tstp",
        "tsfp",
        "atsfp",
        "state",
        "next_state",
        "rewind_state",
        "mac",
        "uid",
        "client_hostname",
        "set_vars",
        "options",
        "abandoned",
        "path",
        "line",
    )


def test_pure_python_forced_by_environment():
    env = {**os.environ, "LEASEDNS_PURE_PYTHON": "1"}
    code = (
        "from leasedns.sources.dhcpd import leases; "
        "print(leases.PARSER, leases._scan, leases._json_lines)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out == "pure Python, LEASEDNS_PURE_PYTHON is set None None\n"


def test_version_says_which_parser(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps it to the terminal
    assert out.startswith("leasedns ") and out.endswith(f"(lease parser: {leases.PARSER})")


# --- fixtures and hand-picked cases ---------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fixtures_same_both_ways(path, tmp_path):
    need_c()
    text = path.read_bytes().decode("latin-1")
    both_ways(text, tmp_path, chunks=(7, 100, 1 << 20))
    both_ways(text + text, tmp_path, chunks=(64,))


def test_all_fixtures_in_one_file(tmp_path):
    need_c()
    text = "".join(p.read_bytes().decode("latin-1") for p in FIXTURES)
    lf = both_ways(text, tmp_path, chunks=(5, 333, 4096, 1 << 20))
    assert lf.leases and lf.problems  # the fixtures hold both


BLOCK = (
    "lease 192.0.2.7 {\n"
    "  starts 3 2024/05/01 10:00:00;\n"
    "  ends 3 2024/05/01 22:00:00;\n"
    "  tstp 3 2024/05/01 22:00:00;\n"
    "  tsfp 3 2024/05/01 22:00:00;\n"
    "  atsfp 3 2024/05/01 22:00:00;\n"
    "  cltt 3 2024/05/01 10:00:00;\n"
    "  binding state active;\n"
    "  next binding state free;\n"
    "  rewind binding state free;\n"
    "  hardware ethernet 02:00:00:00:00:07;\n"
    '  uid "\\001\\002\\000\\000\\000\\000\\007";\n'
    '  set leasedns-mac = "02:00:00:00:00:07";\n'
    '  set leasedns-name = "h7";\n'
    "  set n = %-12;\n"
    "  set b = true;\n"
    "  set x = 0a:Bc;\n"
    '  option agent.circuit-id "eth0:1";\n'
    "  option agent.remote-id 0:1:2;\n"
    '  client-hostname "h7";\n'
    "  on expiry or release {\n"
    '    execute ("/x", "}");\n'
    "  }\n"
    "}\n"
)


def test_every_statement_of_the_layout():
    need_c()
    (x,) = both_ways(BLOCK).leases
    assert x.set_vars == (
        ("leasedns-mac", "02:00:00:00:00:07"),
        ("leasedns-name", "h7"),
        ("n", "%-12"),
        ("b", "true"),
        ("x", "0a:Bc"),
    )
    assert x.options == (("agent.circuit-id", '"eth0:1"'), ("agent.remote-id", "0:1:2"))
    assert x.uid == b"\x01\x02\x00\x00\x00\x00\x07"
    # equal values share one object: what keeps the 100,000-lease parse small
    assert x.ends is x.tstp is x.tsfp is x.atsfp and x.starts is x.cltt
    assert x.set_vars[0][1] is x.mac and x.set_vars[1][1] is x.client_hostname


@pytest.mark.parametrize(
    "edit",
    [
        ("192.0.2.7 {", "192.0.2.999 {"),  # impossible address: general parser reports it
        ("192.0.2.7 {", "192.0.02.7 {"),
        ("192.0.2.7 {", "1.2.3.4.5.6 {"),
        ("2024/05/01 10:00:00", "2024/02/30 10:00:00"),
        ("2024/05/01 10:00:00", "2023/02/29 10:00:00"),
        ("2024/05/01 10:00:00", "2024/02/29 23:59:60"),
        ("2024/05/01 10:00:00", "2100/02/29 10:00:00"),  # no leap day in a century year
        ("2024/05/01 10:00:00", "2000/02/29 10:00:00"),  # but in one that 400 divides
        ("2024/05/01 10:00:00", "0000/01/01 00:00:00"),
        ("2024/05/01 10:00:00", "9999/12/31 23:59:59"),
        ("2024/05/01 10:00:00", "2024/05/01 24:00:00"),
        ("2024/05/01 22:00:00", "2024/05/01 22:60:00"),
        ("2024/05/01 22:00:00", "2024/05/01 22:00:61"),
        ("2024/05/01 22:00:00", "2024/5/01 22:00:00"),
        ("  ends 3 2024/05/01 22:00:00", "  ends never"),
        ("  starts 3 2024/05/01 10:00:00", "  starts epoch 1714557600"),
        ("binding state active", "binding state abandoned"),
        ("binding state active", "binding state weird-state"),
        ("binding state active", "binding state Active"),
        ("binding state active", "binding state bootp"),  # read as active, on the fast paths
        ("binding state active", "binding state reserved"),
        ("next binding state free", "next binding state bootp"),
        ("next binding state free", "next binding state nope"),  # dhcpd drops the block
        ("rewind binding state free", "rewind binding state x"),
        ("  binding state active;\n", ""),  # dhcpd makes the state up from ends
        ("  ends 3 2024/05/01 22:00:00;\n", ""),
        ("  binding state active;\n", "  abandoned;\n"),
        ("  binding state active;\n", "  binding state active;\n  abandoned;\n"),
        ("  binding state active;\n", "  abandoned;\n  binding state active;\n"),
        ("2024/05/01 10:00:00;", "2024/05/01 10:00:00 3600;"),  # a zone offset
        ("2024/05/01 10:00:00;", "2024/05/01 10:00:00 -3600;"),
        ("2024/05/01 10:00:00;", "2024/05/01 10:00:00 99999999999;"),
        ('client-hostname "h7"', "client-hostname h7"),
        ('client-hostname "h7"', "client-hostname h7.example.org."),
        ('client-hostname "h7"', "client-hostname h/7"),
        ("02:00:00:00:00:07;", "02:00:00:00:00:0A;"),
        ("02:00:00:00:00:07;", "2:0:0:0:0:7;"),
        ('"\\001\\002', '"\\x41\\t\\r\\n\\b\\q\\777\\8\\"\\\\'),
        ('uid "\\001\\002\\000\\000\\000\\000\\007"', "uid 01:02:03"),
        ('"h7";\n  on', '"h\\303\\251 \\377\\\\\\"";\n  on'),
        ('"h7";\n  on', '"h\\x";\n  on'),
        ("set b = true", "set b = truex"),
        ("set b = true", "set b = false"),
        ("set b = true", "set b = %"),
        ("set b = true", "set b = %-"),
        ("set b = true", "set b = %7"),
        ("set b = true", "set b = fa"),
        ("set b = true", 'set b = "a;b"'),
        ("set b = true", "set b = x y"),
        ("option agent.circuit-id", "option agent.Circuit-id"),
        ("option agent.circuit-id", "option host-name"),
        ("  on expiry or release {", "  on  {"),
        ("  on expiry or release {", "  on   {"),
        ("  on expiry or release {", "  on expiry{"),
        ('    execute ("/x", "}");\n', ""),
        ('    execute ("/x", "}");\n', "   three;\n"),
        ("  }\n}\n", "  }\n}"),
        ("  }\n}\n", "  }\n}lease"),
        ("  }\n}\n", "  }\n} \n"),
        ("  }\n}\n", "  }\n"),
        ("\n  client-hostname", "\n  # a comment\n  client-hostname"),
        ("  hardware", "\thardware"),
        ("  cltt", "  cltt 3 2024/05/01 10:00:00;\n  cltt"),  # a statement twice
        (";\n", ";\r\n"),
        ("h7", "h\x00\xff\x85\xa0"),
        ("eth0:1", "\x00\xff"),
    ],
)
def test_edits_same_both_ways(edit, tmp_path):
    need_c()
    old, new = edit
    text = BLOCK
    assert old in text
    text = text.replace(old, new, 1)
    # the block alone, between good blocks, and after junk
    both_ways(text, tmp_path, chunks=(9, 1 << 20))
    good = BLOCK.replace("192.0.2.7", "192.0.2.8")
    both_ways(good + text + good.replace(".8 {", ".9 {"), tmp_path, chunks=(50,))
    both_ways("junk;\n\x0c\n" + text, tmp_path, chunks=(1 << 20,))


@pytest.mark.parametrize(
    "gap",
    ["", "\n", " \t\n", "\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\n", "\x00\n", "x\n", "# c\n", "\r\n"],
)
def test_gaps_between_blocks(gap):
    # str.strip() blanks (\x1c-\x1f, \x85, \xa0 included) are skipped, anything else is parsed
    need_c()
    good = BLOCK
    both_ways(good + gap + good.replace(".7 {", ".8 {") + gap)


def test_text_beyond_latin1_goes_the_python_way():
    need_c()
    text = BLOCK.replace('"h7"', '"h\u20ac"')
    assert leases._scan is not None
    assert leases._scan(text, 0, 0, 0, {}, "p", Lease) is None
    both_ways(text)


def test_scan_refuses_bad_arguments():
    need_c()
    from leasedns.sources.dhcpd._leasescan import scan

    text = BLOCK
    with pytest.raises(TypeError):
        scan(text, 0, 0, 0, {}, "p")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        scan(text, 0, 0, 0, {}, "p", dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scan(b"x", 0, 0, 0, {}, "p", Lease)  # type: ignore[arg-type]
    for pos, line_pos in ((-1, 0), (len(text) + 1, 0), (0, -1), (0, len(text) + 1)):
        with pytest.raises(ValueError):
            scan(text, pos, line_pos, 0, {}, "p", Lease)


def test_hostile_sizes(tmp_path):
    """Huge lines, a block that never ends, NULs: bounds, not buffers."""
    need_c()
    good = BLOCK
    for text in (
        good + "x" * 300_000,
        good + "lease " + "1" * 200_000 + " {\n" + good,
        "lease 192.0.2.1 {\n  binding state active;\n  on expiry {\n" + "    x;\n" * 30_000,
        good.replace('"h7"', '"' + "\\" * 100_000 + '"') + good,
        good.replace('"h7"', '"' + "\xe9" * 100_000 + '"'),
        "\x00" * 100_000 + good + "\x00" * 100_000,
        good * 2000,
    ):
        both_ways(text, tmp_path, chunks=(1 << 14, 1 << 20))


def test_no_leaks():
    """Refcounts: parsing the same text again and again holds no more memory."""
    need_c()
    text = "".join(p.read_bytes().decode("latin-1") for p in FIXTURES) + BLOCK * 50
    path = "leak.leases"
    for _ in range(3):
        parse_leases(text, path)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            parse_leases(text, path)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown
    refs = sys.getrefcount(path)
    lf = parse_leases(text, path)
    assert sys.getrefcount(path) > refs
    del lf
    assert sys.getrefcount(path) == refs


def test_memory_error_propagates():
    """Out of memory inside the scanner is a MemoryError, never a crash."""
    need_c()
    import resource

    need(
        resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY,
        "an address-space limit is already set (ulimit -v)",
    )
    code = (
        "import resource, sys\n"
        "from leasedns.sources.dhcpd.leases import parse_leases\n"
        "text = sys.stdin.read()\n"
        "status = [l for l in open('/proc/self/status') if l.startswith('VmSize:')]\n"
        "limit = int(status[0].split()[1]) * 1024 + int(sys.argv[1]) * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "try:\n"
        "    n = len(parse_leases(text, 'p').leases)\n"
        "except MemoryError:\n"
        "    sys.exit(3)\n"
        "print(n)\n"
    )
    good = BLOCK
    text = "".join(good.replace("192.0.2.7", f"10.0.{i >> 8}.{i & 255}") for i in range(20_000))
    outcomes = []
    for extra_mib in range(16, 64, 4):
        res = subprocess.run(
            [sys.executable, "-c", code, str(extra_mib)], input=text, capture_output=True, text=True
        )
        # 0: it fitted; 3: MemoryError; anything else (a signal: < 0) is a bug
        assert res.returncode in (0, 3), (extra_mib, res.returncode, res.stderr[-2000:])
        outcomes.append(res.returncode)
    assert 3 in outcomes and 0 in outcomes, outcomes


# --- generated files: dhcpd's layout with random values, then damage ---------------------------

_BYTES = st.binary(max_size=10)
_WEEKDAYS = st.integers(0, 9).map(str)


def _quote(raw: bytes, draw: st.DrawFn) -> str:
    """quotify_buf()'s way (octal for the unprintable), with other escapes mixed in."""
    out = []
    for c in raw:
        ch = chr(c)
        how = draw(st.integers(0, 9))
        if ch in '"\\':
            out.append("\\" + ch)
        elif how == 0:
            out.append(
                draw(st.sampled_from([f"\\x{c:02x}", f"\\x{c:x}", f"\\{c:o}", f"\\{c:03o}"]))
            )
        elif 32 <= c < 127 or how == 1:
            out.append(ch)
        else:
            out.append(f"\\{c:03o}")
    if draw(st.integers(0, 9)) == 0:
        out.append(draw(st.sampled_from(["\\t", "\\q", "\\x", "\\xg", "\\777", "\\8", "\\0"])))
    return "".join(out)


@st.composite
def times(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return "never"
    if kind == 1:
        return f"epoch {draw(st.integers(0, 2**33))}"
    if kind == 2:  # any digits: impossible dates included
        y, mo, d = draw(st.integers(0, 9999)), draw(st.integers(0, 19)), draw(st.integers(0, 39))
        h, mi, s = draw(st.integers(0, 29)), draw(st.integers(0, 69)), draw(st.integers(0, 69))
        return f"{draw(_WEEKDAYS)} {y:04d}/{mo:02d}/{d:02d} {h:02d}:{mi:02d}:{s:02d}"
    if kind == 3:  # the end of February, in leap and century years
        year = draw(st.sampled_from([1900, 2000, 2023, 2024, 2100, 2400]))
        return f"{draw(_WEEKDAYS)} {year}/02/{draw(st.integers(28, 30))} 12:00:00"
    t = time.gmtime(draw(st.integers(-(2**31), 2**34)))
    # now and then a zone offset after the time, as dhcpd's parse_date_core reads it
    offset = draw(st.sampled_from(["", "", "", "", " 3600", " -7200", " 0", " +1", " 1e3"]))
    return (
        f"{(t.tm_wday + 1) % 7} {t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{offset}"
    )


@st.composite
def addresses(draw: st.DrawFn) -> str:
    octets = [str(draw(st.integers(0, 255))) for _ in range(4)]
    if draw(st.integers(0, 9)) == 0:  # 999, 256, leading zeros, too few or many parts
        bad = draw(st.sampled_from(["999", "256", "01", "00", "1.2", ""]))
        octets[draw(st.integers(0, 3))] = bad
    return ".".join(octets)


_STATES = st.sampled_from(
    [
        *("active", "free", "backup", "expired", "released", "abandoned", "reset"),
        *("bootp", "reserved", "Active", "x-y"),
    ]
)
_SET_VALUES = st.one_of(
    _BYTES.map(lambda b: ("q", b)),
    st.sampled_from(["true", "false", "%0", "%-5", "%12", "0a:FF:3", "ab", "fa", "%", "tru"]),
)


@st.composite
def dhcpd_block(draw: st.DrawFn) -> str:
    """One `lease` block in write_lease()'s layout, every optional statement maybe there."""
    lines = [f"lease {draw(addresses())} {{"]
    for word in ("starts", "ends", "tstp", "tsfp", "atsfp", "cltt"):
        if draw(st.booleans()):
            lines.append(f"  {word} {draw(times())};")
    # no binding state (dhcpd makes one up), and the bare `abandoned;` before or after it
    binding = draw(st.sampled_from(["state"] * 4 + ["none", "abandoned", "before", "after"]))
    if binding in ("abandoned", "before"):
        lines.append("  abandoned;")
    if binding in ("state", "before", "after"):
        lines.append(f"  binding state {draw(_STATES)};")
    if binding == "after":
        lines.append("  abandoned;")
    for word in ("next", "rewind"):
        if draw(st.booleans()):
            lines.append(f"  {word} binding state {draw(_STATES)};")
    if draw(st.booleans()):
        mac = ":".join(f"{b:02x}" for b in draw(st.binary(min_size=6, max_size=6)))
        if draw(st.integers(0, 9)) == 0:
            mac = draw(st.sampled_from([mac.upper(), mac[:-3], mac + ":00", "1:2:3:4:5:6"]))
        lines.append(f"  hardware ethernet {mac};")
    if draw(st.booleans()):
        uid = draw(_BYTES)
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"  uid {':'.join(f'{b:x}' for b in uid) or '0'};")
        else:
            lines.append(f'  uid "{_quote(uid, draw)}";')
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["leasedns-mac", "leasedns-name", "v", "a.b_c-D9"]))
        value = draw(_SET_VALUES)
        if isinstance(value, tuple):
            value = f'"{_quote(value[1], draw)}"'
        lines.append(f"  set {name} = {value};")
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["circuit-id", "remote-id", "subscriber-id"]))
        lines.append(f'  option agent.{name} "{_quote(draw(_BYTES), draw)}";')
    if draw(st.booleans()):
        if draw(st.integers(0, 4)) == 0:  # unquoted: a host name, or not
            name = draw(st.sampled_from(["host16", "h-1.example.org", "h.", "a/b", "1.2"]))
            lines.append(f"  client-hostname {name};")
        else:
            lines.append(f'  client-hostname "{_quote(draw(_BYTES), draw)}";')
    for _ in range(draw(st.integers(0, 2))):
        event = draw(st.sampled_from(["expiry", "release", "commit", "expiry or release"]))
        lines += [f"  on {event} {{", '    execute ("/x", "}");', "        more;", "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


_OTHER = [
    "authoring-byte-order little-endian;\n\n",
    'server-duid "\\000\\001";\n',
    "host h {\n  dynamic;\n  hardware ethernet 02:00:00:00:00:01;\n  fixed-address 192.0.2.5;\n}\n",
    'failover peer "p" state {\n  my state normal at 3 2024/05/01 10:00:00;\n}\n',
    'ia-na "\\001" {\n  cltt 3 2024/05/01 10:00:00;\n}\n',
    "# comment\n",
    "\n",
]
_JUNK = st.one_of(
    st.sampled_from(
        [
            *("\x00", "\xff", "\\", '"', "\n", "{", "}", ";", " ", "  ", "lease ", "#", "\r"),
            *("\t", "  set x = 1;\n", "  binding state free;\n", "never", "2024/02/30", "999"),
        ]
    ),
    st.binary(max_size=6).map(lambda b: b.decode("latin-1")),
)


@st.composite
def damaged(draw: st.DrawFn, text: str) -> str:
    """A few random edits: delete, insert, replace, duplicate, truncate."""
    for _ in range(draw(st.integers(0, 4))):
        n = len(text)
        op = draw(st.integers(0, 4))
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        if op == 0:
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + draw(_JUNK) + text[i:]
        elif op == 2:
            text = text[:i] + draw(_JUNK) + text[j:]
        elif op == 3:
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i]
    return text


lease_files = st.lists(
    st.one_of(dhcpd_block(), dhcpd_block(), dhcpd_block(), st.sampled_from(_OTHER)), max_size=8
).map("".join)

GEN = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@GEN
@given(lease_files)
def test_generated_files_same_both_ways(text):
    need_c()
    both_ways(text)


@GEN
@given(lease_files.flatmap(damaged))
def test_damaged_files_same_both_ways(text):
    need_c()
    both_ways(text)


@settings(GEN, max_examples=100)
@given(text=lease_files.flatmap(damaged), size=st.integers(1, 300))
def test_damaged_files_read_in_chunks_same_both_ways(text, size, tmp_path_factory):
    need_c()
    both_ways(text, tmp_path_factory.mktemp("chunks"), chunks=(size,))
