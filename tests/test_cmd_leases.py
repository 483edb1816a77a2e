"""Tests for `leasedns leases`: table, JSON lines, --all, problems and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import need
from leasedns.commands import leases as cmd_leases
from leasedns.sources.dhcpd.leases import Lease, in_force, newest_per_address, read_leases

DATA = Path(__file__).parent / "data" / "leases"
NOW = 1714568400  # 2024-05-01 13:00:00 UTC


def run(*argv: str) -> tuple[int, str, str]:
    ap = argparse.ArgumentParser()
    cmd_leases.add_parser(ap.add_subparsers())
    args = ap.parse_args(["leases", *argv])
    out, err = io.StringIO(), io.StringIO()
    return args.run(args, out, err, now=NOW), out.getvalue(), err.getvalue()


def test_table_two_peers():
    a, b = str(DATA / "two-peers-a.leases"), str(DATA / "two-peers-b.leases")
    code, out, err = run(a, b)
    assert (code, err) == (0, "")
    w = max(len(a), len(b))
    assert out.splitlines() == [
        "ip          mac                state   starts               ends"
        "                 client-hostname  file",
        "192.0.2.30  02:00:00:00:00:bb  active  2024-05-01 12:00:00  2024-05-02 00:00:00"
        "  -                " + f"{b:<{w}}".rstrip(),
        "192.0.2.31  02:00:00:00:00:31  active  2024-05-01 09:00:00  2024-05-01 21:00:00"
        "  only-on-a        " + f"{a:<{w}}".rstrip(),
    ]


def test_json_all_and_problems_exit_1():
    path = str(DATA / "cut-mid-block.leases")
    code, out, err = run("--json", "--all", path)
    assert code == 1
    assert [json.loads(x)["ip"] for x in out.splitlines()] == ["192.0.2.20", "192.0.2.22"]
    assert json.loads(out.splitlines()[0]) == {
        "ip": "192.0.2.20",
        "mac": "02:00:00:00:00:20",
        "state": "active",
        "starts": 1714557600,
        "ends": 1714600800,
        "client-hostname": None,
        "file": path,
    }
    assert err.splitlines() == [
        f"{path}:7: lease 192.0.2.21: block is not closed (cut off?); skipped",
        f"{path}:22: lease 192.0.2.23: unterminated string (cut off?); skipped",
    ]


def test_all_shows_free():
    code, out, _ = run("--json", "--all", str(DATA / "freed-after-active.leases"))
    assert code == 0
    assert [(json.loads(x)["ip"], json.loads(x)["state"]) for x in out.splitlines()] == [
        ("192.0.2.10", "free"),
        ("192.0.2.11", "active"),
    ]


def test_unreadable_file_exit_2(tmp_path):
    missing = str(tmp_path / "nope.leases")
    code, out, err = run(missing, str(DATA / "two-peers-b.leases"))
    assert code == 2
    assert err == f"{missing}: cannot read: No such file or directory\n"
    assert "192.0.2.30" in out


# --- the JSON output, pinned byte for byte -------------------------------------------------

# Two peers' files: addresses out of order (and 192.0.2.9 < 192.0.2.10 < 192.0.2.100 only as
# numbers), one address on both peers, hostile client names (quotes, backslashes, escape
# sequences, a byte that is not UTF-8, a line separator), a lease with no MAC, one that never
# ends, one in dhcpd's layout and one that is not (epoch times), and every state --all shows.
_GOLDEN_A = r"""lease 192.0.2.100 {
  starts 3 2024/05/01 10:00:00;
  ends 3 2024/05/01 22:00:00;
  cltt 3 2024/05/01 10:00:00;
  binding state active;
  next binding state free;
  hardware ethernet 02:00:00:00:01:00;
  uid "\001\002\000\000\000\001\000";
  client-hostname "say \"hi\" \\ <b>";
}
lease 192.0.2.9 {
  starts 3 2024/05/01 11:00:00;
  ends never;
  binding state active;
  client-hostname "\033[31mred\033[0m\ttab";
}
lease 10.0.0.1 {
  starts epoch 1714557600; # Wed May 01 10:00:00 2024
  ends epoch 1714600800; # Wed May 01 22:00:00 2024
  binding state active;
  hardware ethernet 02:00:00:00:00:01;
  client-hostname "bad\377byte caf\303\251 \342\200\250";
}
lease 192.0.2.10 {
  starts 3 2024/05/01 09:00:00;
  ends 3 2024/05/01 21:00:00;
  binding state active;
  hardware ethernet 02:00:00:00:00:0a;
  client-hostname "old-owner";
}
lease 192.0.2.11 {
  starts 3 2024/05/01 08:00:00;
  ends 3 2024/05/01 10:00:00;
  binding state free;
  hardware ethernet 02:00:00:00:00:0b;
}
lease 192.0.2.12 {
  starts 3 2024/05/01 08:00:00;
  ends 3 2024/05/01 20:00:00;
  binding state backup;
}
lease 192.0.2.13 {
  starts 3 2024/05/01 08:00:00;
  ends 3 2024/05/01 12:00:00;
  binding state active;
  hardware ethernet 02:00:00:00:00:0d;
  client-hostname "ended-at-noon";
}
lease 192.0.2.14 {
  starts 3 2024/05/01 08:00:00;
  ends 3 2024/05/01 20:00:00;
  abandoned;
}
"""
_GOLDEN_B = r"""lease 192.0.2.10 {
  starts 3 2024/05/01 12:00:00;
  ends 3 2024/05/02 00:00:00;
  binding state active;
  hardware ethernet 02:00:00:00:00:bb;
  client-hostname "new-owner";
}
lease 192.0.2.255 {
  starts 3 2024/05/01 12:30:00;
  ends 3 2024/05/01 12:45:00;
  binding state expired;
  hardware ethernet 02:00:00:00:00:ff;
  client-hostname "gone";
}
"""


def _golden_files(tmp_path: Path) -> tuple[str, str, str, str]:
    d = tmp_path / 'pe"er\\\u00fc\x01'  # a directory name with everything JSON must escape
    d.mkdir()
    a, b = d / "a.leases", d / "b.leases"
    a.write_text(_GOLDEN_A, encoding="latin-1")
    b.write_text(_GOLDEN_B, encoding="latin-1")
    # how JSON writes the paths, checked here so the goldens below can use them
    fa, fb = (json.dumps(str(x)) for x in (a, b))
    assert fa.endswith('pe\\"er\\\\\\u00fc\\u0001/a.leases"')
    return str(a), str(b), fa, fb


def test_json_golden_live(tmp_path):
    a, b, fa, fb = _golden_files(tmp_path)
    code, out, err = run("--json", a, b)
    assert (code, err) == (0, "")
    assert out == (
        '{"ip": "10.0.0.1", "mac": "02:00:00:00:00:01", "state": "active", "starts": 1714557600, '
        '"ends": 1714600800, "client-hostname": "bad\\udcffbyte caf\\u00e9 \\u2028", '
        f'"file": {fa}}}\n'
        '{"ip": "192.0.2.9", "mac": null, "state": "active", "starts": 1714561200, '
        '"ends": null, "client-hostname": "\\u001b[31mred\\u001b[0m\\ttab", '
        f'"file": {fa}}}\n'
        '{"ip": "192.0.2.10", "mac": "02:00:00:00:00:bb", "state": "active", '
        '"starts": 1714564800, "ends": 1714608000, "client-hostname": "new-owner", '
        f'"file": {fb}}}\n'
        '{"ip": "192.0.2.100", "mac": "02:00:00:00:01:00", "state": "active", '
        '"starts": 1714557600, "ends": 1714600800, '
        '"client-hostname": "say \\"hi\\" \\\\ <b>", '
        f'"file": {fa}}}\n'
    )


def test_json_golden_all(tmp_path):
    a, b, fa, fb = _golden_files(tmp_path)
    code, out, err = run("--json", "--all", b, a)
    assert (code, err) == (0, "")
    lines = out.splitlines(keepends=True)
    assert "".join(lines[:2]) == run("--json", a, b)[1].split('\n{"ip": "192.0.2.10"')[0] + "\n"
    assert [json.loads(x)["ip"] for x in lines] == [
        "10.0.0.1",
        "192.0.2.9",
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
        "192.0.2.14",
        "192.0.2.100",
        "192.0.2.255",
    ]
    assert lines[2:] == [
        '{"ip": "192.0.2.10", "mac": "02:00:00:00:00:bb", "state": "active", '
        '"starts": 1714564800, "ends": 1714608000, "client-hostname": "new-owner", '
        f'"file": {fb}}}\n',
        '{"ip": "192.0.2.11", "mac": "02:00:00:00:00:0b", "state": "free", '
        '"starts": 1714550400, "ends": 1714557600, "client-hostname": null, '
        f'"file": {fa}}}\n',
        '{"ip": "192.0.2.12", "mac": null, "state": "backup", "starts": 1714550400, '
        f'"ends": 1714593600, "client-hostname": null, "file": {fa}}}\n',
        '{"ip": "192.0.2.13", "mac": "02:00:00:00:00:0d", "state": "active", '
        '"starts": 1714550400, "ends": 1714564800, "client-hostname": "ended-at-noon", '
        f'"file": {fa}}}\n',
        '{"ip": "192.0.2.14", "mac": null, "state": "abandoned", "starts": 1714550400, '
        f'"ends": 1714593600, "client-hostname": null, "file": {fa}}}\n',
        '{"ip": "192.0.2.100", "mac": "02:00:00:00:01:00", "state": "active", '
        '"starts": 1714557600, "ends": 1714600800, '
        '"client-hostname": "say \\"hi\\" \\\\ <b>", '
        f'"file": {fa}}}\n',
        '{"ip": "192.0.2.255", "mac": "02:00:00:00:00:ff", "state": "expired", '
        '"starts": 1714566600, "ends": 1714567500, "client-hostname": "gone", '
        f'"file": {fb}}}\n',
    ]


def _when(ts: int) -> str:
    """dhcpd's print_time(): weekday (0 = Sunday), then UTC date and time."""
    t = time.gmtime(ts)
    return f"{(t.tm_wday + 1) % 7} " + time.strftime("%Y/%m/%d %H:%M:%S", t)


def _reference_json(files: list[str], now: int, include_all: bool) -> str:
    """`leases --json` as it was first written: a dict per lease, json.dumps per line."""
    lfs = [read_leases(f) for f in files]
    key = lambda x: tuple(int(o) for o in x.ip.split("."))  # noqa: E731
    shown = (
        sorted(newest_per_address(lfs), key=key)
        if include_all
        else sorted(
            (
                x
                for x in newest_per_address(lfs)
                if x.state == "active" and (x.ends is None or x.ends > now)
            ),
            key=key,
        )
    )
    return "".join(
        json.dumps(
            {
                "ip": x.ip,
                "mac": x.mac,
                "state": x.state,
                "starts": x.starts,
                "ends": x.ends,
                "client-hostname": x.client_hostname,
                "file": x.path,
            },
            ensure_ascii=True,
        )
        + "\n"
        for x in shown
    )


_NAME_BYTES = b"az-.<>/&'\"\\\t\n\x00\x1b\x7f\x80\xc3\xa9\xe2\x80\xa8\xff"


def _random_leases(rnd: random.Random, n: int) -> str:
    """n lease blocks over few addresses (so peers collide), with hostile client names."""
    out = []
    for _ in range(n):
        ip = f"{rnd.choice((10, 192, 9))}.0.{rnd.randrange(3)}.{rnd.randrange(256)}"
        starts = NOW - 86400 + rnd.randrange(2 * 86400)
        lines = [f"lease {ip} {{"]
        if rnd.random() < 0.9:
            lines.append(f"  starts {_when(starts)};")
        if rnd.random() < 0.9:
            lines.append(
                f"  ends {_when(starts + rnd.randrange(86400))};"
                if rnd.random() < 0.9
                else "  ends never;"
            )
        if rnd.random() < 0.1:  # not dhcpd's layout: the general parser reads it
            lines.append("  # a comment")
        lines.append(
            f"  binding state {rnd.choice(('active',) * 4 + ('free', 'backup', 'expired'))};"
        )
        if rnd.random() < 0.8:
            lines.append(
                "  hardware ethernet "
                + ":".join(f"{rnd.randrange(256):02x}" for _ in range(6))
                + ";"
            )
        if rnd.random() < 0.8:
            # any bytes, quoted as dhcpd's quotify_buf does: \" \\ and octal for the rest,
            # except bytes above 0x7f, written raw now and then as a hand edit might
            name = "".join(
                '\\"'
                if b == 0x22
                else "\\\\"
                if b == 0x5C
                else chr(b)
                if 0x20 <= b < 0x7F or (b > 0x7F and rnd.random() < 0.5)
                else f"\\{b:03o}"
                for b in rnd.choices(_NAME_BYTES, k=rnd.randrange(12))
            )
            lines.append(f'  client-hostname "{name}";')
        out.append("\n".join(lines) + "\n}\n")
    return "".join(out)


@pytest.mark.parametrize("seed", range(5))
def test_json_same_as_first_written(tmp_path, seed):
    rnd = random.Random(seed)
    paths = []
    for i in range(3):
        p = tmp_path / f"peer-{i}\u00e9.leases"
        p.write_text(_random_leases(rnd, 600), encoding="latin-1")
        paths.append(str(p))
    for include_all in (False, True):
        code, out, err = run("--json", *(["--all"] if include_all else []), *paths)
        assert (code, err) == (0, "")
        assert out == _reference_json(paths, NOW, include_all)
        assert len(out.splitlines()) > (1000 if include_all else 300)


def test_leases_command_imports_no_dns_yaml_or_merge(tmp_path):
    # A whole `leasedns leases` run is mostly start-up when the file is small: it must not pay
    # for dnspython, PyYAML, the config loader or the merge engine, none of which it uses.
    code = (
        "import io, sys\n"
        "from leasedns.cli import main\n"
        "out = io.StringIO()\n"
        "rc = main(['leases', '--json', '--all', sys.argv[1]], out)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('dns', 'yaml')\n"
        "    or m in ('logging', 'leasedns.config', 'leasedns.merge', 'leasedns.mergestate',\n"
        "             'leasedns.resolved', 'leasedns.apply', 'leasedns.journal'))\n"
        "print(rc, out.getvalue().count('\\n'), heavy)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(DATA / "two-peers-a.leases")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout == "0 2 []\n", res.stderr


# --- the C accelerator's JSON lines against the Python ones ---------------------------------

# json's escapes all told: quotes, backslashes, named and \u00XX control characters, DEL,
# latin-1, a line separator, a character beyond the BMP (a surrogate pair in JSON), bytes that
# are not UTF-8 (lone surrogates after surrogateescape), and a NUL.
_HOSTILE_NAMES = (
    r"say \"hi\" \\ <b>",
    r"\033[31mred\033[0m\ttab\r\n\b\014\f",  # \f: an f to dhcpd
    "caf\303\251 \342\200\250 \360\237\230\200",
    r"bad\377\376byte\200",
    r"nul\000del\177",
    "",
    "plain-host",
)


def _hostile_file(rnd: random.Random, n: int) -> str:
    """_random_leases, with every name in _HOSTILE_NAMES somewhere, in dhcpd's layout."""
    text = _random_leases(rnd, n)
    for i, name in enumerate(_HOSTILE_NAMES):
        text += (
            f"lease 9.9.{rnd.randrange(3)}.{i} {{\n  starts {_when(NOW - 60)};\n"
            f"  ends {_when(NOW + 60)};\n  binding state active;\n"
            f'  client-hostname "{name}";\n}}\n'
        )
    return text


def _c_json(shown: list, live_at: int | None = None) -> str | None:
    need(
        cmd_leases._json_lines is not None,
        "the C accelerator _leasescan is not built or LEASEDNS_PURE_PYTHON is set",
    )
    assert cmd_leases._json_lines is not None
    return cmd_leases._json_lines(shown, Lease, live_at)


def _c_and_python_json(shown: list, live_at: int | None = None) -> tuple[str | None, str]:
    py = cmd_leases._format_json(shown if live_at is None else in_force(shown, live_at))
    return _c_json(shown, live_at), py


@pytest.mark.parametrize("seed", range(4))
def test_json_c_same_as_python(tmp_path, seed):
    rnd = random.Random(seed)
    # file names json must escape too, one of them not UTF-8 (a surrogate in the str)
    names = ["peer-a.leases", 'pe"er\\\u00e9\x01.leases', os.fsdecode(b"peer-\xff.leases")]
    paths = []
    for name in names:
        p = tmp_path / name
        p.write_bytes(_hostile_file(rnd, 400).encode("latin-1"))
        paths.append(str(p))
    newest = list(newest_per_address(read_leases(p) for p in paths))
    rnd.shuffle(newest)  # a rewritten file's order: the C code sorts by address itself
    for live_at in (None, NOW):
        c, py = _c_and_python_json(newest, live_at)
        assert c == py
        assert len(py.splitlines()) > (800 if live_at is None else 300)
        for escaped in ("\\ud83d\\ude00", "\\udcff", "\\u007f", "\\u0000", "\\f", "\\u00e9"):
            assert escaped in py
    # and the whole command, either way
    for argv in (["--json", *paths], ["--json", "--all", *paths]):
        out_c = run(*argv)
        saved = cmd_leases._json_lines
        cmd_leases._json_lines = None
        try:
            assert run(*argv) == out_c
        finally:
            cmd_leases._json_lines = saved


def test_json_c_live_at_as_in_force():
    base = read_leases(str(DATA / "two-peers-a.leases")).leases[0]
    leases = [
        base._replace(ip=f"10.0.0.{i}", state=state, ends=ends)
        for i, (state, ends) in enumerate(
            (state, ends)
            for state in ("active", "free", "expired", "abandoned", "backup", "activ")
            for ends in (None, NOW - 1, NOW, NOW + 1)
        )
    ]
    for live_at in (None, NOW, NOW - 1, NOW + 1):
        c, py = _c_and_python_json(leases, live_at)
        assert c == py
    assert _c_json(leases, NOW).count("\n") == 2  # active, ends None or NOW + 1
    with pytest.raises(TypeError):
        _c_json(leases, "now")  # type: ignore[arg-type]


def test_json_c_declines_what_the_parser_never_makes():
    base = read_leases(str(DATA / "two-peers-a.leases")).leases[0]
    odd = [
        base._replace(ip="010.0.0.1"),  # inet_aton reads octal there
        base._replace(ip="1.2.3"),
        base._replace(starts=2**70),
        base._replace(ends=True),
        base._replace(mac="02:00:00:00:00:\u00e9"),
        base._replace(client_hostname=b"bytes"),
        tuple(base),
    ]
    for lease in odd:
        assert _c_json([base, lease]) is None, lease
    c, py = _c_and_python_json([base._replace(starts=-(2**63), ends=2**63 - 1)])
    assert c == py


def test_json_c_empty_and_sorted_stably():
    a = read_leases(str(DATA / "two-peers-a.leases")).leases[0]
    assert _c_and_python_json([]) == ("", "")
    # equal addresses (not from one file) keep their order, as sorted() keeps it
    same = [a._replace(client_hostname=str(i), ip=f"10.0.0.{i % 3}") for i in range(9)]
    c, py = _c_and_python_json(same[::-1])
    assert c == py


def _whole_process(
    paths: list[str], pure: bool, returns: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """`leasedns leases --json --all PATHS` as the installed program runs it: main() alone,
    which then ends the process itself. `returns`: main(argv), which returns as it always did.
    (--all: what is live depends on the clock, which moves between two runs.)"""
    env = {k: v for k, v in os.environ.items() if k != "LEASEDNS_PURE_PYTHON"}
    if pure:
        env["LEASEDNS_PURE_PYTHON"] = "1"
    code = (
        "import atexit, sys\n"
        "from leasedns.cli import main\n"
        "atexit.register(print, 'teardown', file=sys.stderr)\n"
        f"sys.exit(main({'sys.argv[1:]' if returns else ''}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "leases", "--json", "--all", *paths],
        env=env,
        capture_output=True,
    )


def test_whole_process_exit_codes_and_output(tmp_path):
    # The program ends itself once the output is out (os._exit, skipping the teardown): the
    # exit code, stdout and stderr must all be there, as when main returns; with or without C.
    rnd = random.Random(7)
    good = tmp_path / "good.leases"
    good.write_bytes(_hostile_file(rnd, 300).encode("latin-1"))
    damaged = str(DATA / "cut-mid-block.leases")
    missing = str(tmp_path / "missing.leases")
    for paths, code in (([str(good)], 0), ([str(good), damaged], 1), ([missing, str(good)], 2)):
        c, pure = _whole_process(paths, False), _whole_process(paths, True)
        returned = _whole_process(paths, False, returns=True)
        assert (c.returncode, c.stdout, c.stderr) == (pure.returncode, pure.stdout, pure.stderr)
        assert (c.returncode, c.stdout, c.stderr + b"teardown\n") == (
            returned.returncode,
            returned.stdout,
            returned.stderr,
        )
        assert c.returncode == code
        assert c.stdout.decode("ascii") == _reference_json(
            [p for p in paths if p != missing], NOW, True
        )
        assert len(c.stdout.splitlines()) > 100


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_lease_file_that_is_no_regular_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    """A lease file is dhcpd's, or a partner's copy: a FIFO would hang the reader and
    /dev/zero would be read for ever; each is refused by name, the other files still read."""
    from helpers import fifo

    good = str(DATA / "two-peers-a.leases")
    path = tmp_path / "dhcpd.leases"
    expect = {
        "fifo": "is a FIFO (named pipe)",
        "dev-zero": "is a character device",
        "directory": "is a directory",
    }[kind]
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    with fifo(path) if kind == "fifo" else contextlib.nullcontext():
        code, out, err = run(str(path), good)
    assert code == 2
    assert err == (
        f"{path}: {expect}, not a regular file; leasedns reads only regular files here "
        "(a symlink to one is fine)\n"
    )
    assert "two-peers-a.leases" in out


def test_a_lease_file_over_the_cap_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leasedns.sources.dhcpd import leases as lease_reader

    monkeypatch.setattr(lease_reader, "MAX_LEASE_FILE_BYTES", 1000)
    path = tmp_path / "big.leases"
    path.write_bytes(b"# " + b"x" * 2000 + b"\n")
    code, _out, err = run(str(path))
    assert code == 2
    assert (
        err == f"{path}: is 2003 bytes, more than the 1000 bytes leasedns reads from such a file\n"
    )
