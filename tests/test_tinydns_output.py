"""The tinydns output: patches the data it wrote last when it serves the changes' base, renders
the whole outcome otherwise; either way the same bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns.model import Changes, Desired, Record, StaticHost, Statics
from leasedns.outputs.tinydns import MEMO, Tinydns, render

TTL = 300
STATICS = Statics(
    hosts=(StaticHost("printer.lab.example", "192.0.2.50", "dhcpd.conf:3"),),
    data_files=(("static", "+www.lab.example:192.0.2.9:300\n"),),
)
HOSTS = [Record("printer.lab.example", "192.0.2.50", None, True, True)]


def _no_compile(argv, **kw):  # type: ignore[no-untyped-def]
    return subprocess.CompletedProcess(argv, 0, b"", b"")


def rec(name: str, ip: int, ttd: int | None = 1_800_000_000) -> Record:
    return Record(name, f"192.0.2.{ip}", ttd, True, False)


def output(tmp: Path) -> Tinydns:
    return Tinydns(tmp, "tinydns-data", TTL, STATICS, tmp, _no_compile)


def publish(tmp: Path, records: list[Record], changes: Changes) -> tuple[str, bytes]:
    out = output(tmp)
    served = out.serving()
    out.publish(Desired(HOSTS, lambda: sorted(records, key=lambda r: r.name)), changes)
    return served.token, (tmp / "data").read_bytes()


def test_the_second_publish_patches_and_a_hand_edit_means_a_whole_render(tmp_path: Path) -> None:
    a, b, c = rec("a.lab.example", 1), rec("b.lab.example", 2), rec("c.lab.example", 3)
    token, data = publish(tmp_path, [a, b], Changes("", "t1"))
    assert token == "" and data == render(STATICS, [*HOSTS, a, b], TTL)
    b2 = rec("b.lab.example", 2, None)
    token, data = publish(tmp_path, [], Changes("t1", "t2", [c], [a], [(b, b2)]))
    # served t1, so only the changes were applied (the desired list given was empty)
    assert token == "t1" and data == render(STATICS, [*HOSTS, b2, c], TTL)
    (tmp_path / "data").write_bytes(data + b"+hand.lab.example:192.0.2.99:300\n")
    token, data = publish(tmp_path, [b2, c], Changes("t2", "t3"))
    assert token == "" and data == render(STATICS, [*HOSTS, b2, c], TTL)  # not served as noted
    assert output(tmp_path).serving().token == "t3"


def test_what_it_serves_is_read_back_with_the_names_as_the_engine_spells_them(
    tmp_path: Path,
) -> None:
    odd = rec("caf\u00e9:x.lab.example", 7)
    publish(tmp_path, [odd], Changes("", "t1"))
    assert output(tmp_path).serving().records() == [odd]
    (tmp_path / MEMO).write_text("not json")
    assert output(tmp_path).serving().token == ""


names = st.sampled_from([f"h{i}.lab.example" for i in range(12)] + ["\u00e9.lab.example", "a-b"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(names, st.integers(1, 5), max_size=12), min_size=1, max_size=6))
def test_patching_step_by_step_gives_the_bytes_of_a_whole_render(
    steps: list[dict[str, int]],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        before: dict[str, Record] = {}
        token = ""
        for n, step in enumerate(steps):
            after = {name: rec(name, ip) for name, ip in step.items()}
            ch = Changes(token, f"t{n}")
            for name in sorted(before.keys() | after.keys()):
                old, new = before.get(name), after.get(name)
                if old is None and new is not None:
                    ch.added.append(new)
                elif new is None and old is not None:
                    ch.removed.append(old)
                elif old is not None and new is not None and old != new:
                    ch.changed.append((old, new))
            _, data = publish(root, list(after.values()), ch)
            assert data == render(STATICS, [*HOSTS, *after.values()], TTL)
            before, token = after, f"t{n}"
