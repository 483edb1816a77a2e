"""Rendering tinydns data: golden file, escaping, time-to-die labels, reading back."""

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns.model import Record, Statics
from leasedns.outputs.tinydns import render, served_records
from leasedns.tinydata import escape, from_tai64, tai64, unescape

GOLDEN = Path(__file__).parent / "data" / "render" / "mixed.data.good"


def sample() -> bytes:
    st = Statics(data_files=(("static.data", ".lab.example:127.53.0.1:ns.lab.example:300\n"),))
    recs = [
        Record("printer.lab.example", "192.0.2.50", None, True, True),
        Record("alias.lab.example", "192.0.2.50", None, False, True),
        Record("pc1.lab.example", "192.0.2.100", 1_800_000_600, True, False),
        Record("pc2.lab.example", "192.0.2.101", None, True, False),
    ]
    return render(st, recs, 300)


def test_render_matches_golden_file() -> None:
    assert sample().decode() == GOLDEN.read_text()


def test_tai64_is_2_62_plus_10_plus_unix() -> None:
    assert tai64(0) == "400000000000000a"
    assert tai64(1_800_000_600) == f"{2**62 + 10 + 1_800_000_600:016x}"
    assert from_tai64(tai64(1_800_000_600)) == 1_800_000_600


def test_escape_octal_escapes_everything_but_name_bytes() -> None:
    assert escape("ok-1.lab.example") == "ok-1.lab.example"
    assert escape("a:b\nc") == "a\\072b\\012c"
    assert escape("\\x") == "\\134x"
    assert escape("é") == "\\303\\251"


def test_served_records_reads_back_what_render_wrote() -> None:
    got = served_records(sample())
    assert got == [
        Record("pc1.lab.example", "192.0.2.100", 1_800_000_600, True, False),
        Record("pc2.lab.example", "192.0.2.101", None, True, False),
    ]
    assert served_records(b"=x.lab.example:192.0.2.1:300\n") == []  # not ours


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="az09.-:\n\\\u00e9\udcff_A ", max_size=20))
def test_unescape_undoes_escape(name: str) -> None:
    assert unescape(escape(name)) == name


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="az09.-:\n\\é\udcff_A ", max_size=20))
def test_escape_fast_path_changes_nothing(name: str) -> None:
    raw = name.encode("utf-8", "surrogateescape")
    slow = "".join(
        chr(b) if chr(b) in "abcdefghijklmnopqrstuvwxyz0123456789.-" else f"\\{b:03o}" for b in raw
    )
    assert escape(name) == slow
