"""Publishing: atomic writes that leave nothing behind; errors say what serves, where to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import tool, write_config
from leasedns import config
from leasedns.commands import apply
from leasedns.errors import PublishError
from leasedns.fsutil import write_atomic
from leasedns.model import Changes, Desired, Statics
from leasedns.outputs.tinydns import Tinydns, static_origin


def test_a_write_that_cannot_finish_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.mkdir()  # the rename cannot replace a directory
    with pytest.raises(OSError):
        write_atomic(target, b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_static_origin_names_the_file_and_line() -> None:
    st = Statics(data_files=(("/etc/a.data", "x\ny\n"), ("/etc/b.data", "z\n")))
    # line 1 is the header, line 2 the static mark
    assert [static_origin(st, n) for n in range(1, 7)] == [
        None,
        None,
        "/etc/a.data:1",
        "/etc/a.data:2",
        "/etc/b.data:1",
        None,
    ]


def test_a_dangling_root_does_not_promise_an_old_data_cdb(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.symlink_to(tmp_path / "nowhere")
    out = Tinydns(root, "tinydns-data", 300, Statics(), tmp_path)
    with pytest.raises(PublishError) as e:
        out.serving()
        out.publish(Desired([], list), Changes("", "t1"))
    assert "keeps serving" not in str(e.value)
    assert f"no data.cdb is served: {root} is not a directory" in str(e.value)


def test_tinydns_data_errors_point_into_the_static_file(tmp_path: Path) -> None:
    tool("tinydns-data")
    cfg = config.load(str(write_config(tmp_path)))
    static = cfg.static_files[0]
    static.write_text(static.read_text() + "# a comment\n?not a record\n")
    apply.ensure_dirs(cfg)
    report = apply.run(cfg)
    assert not report.ok
    assert "unable to parse data line" in report.error
    assert f"the line comes from {static}:4: fix it there" in report.error
    assert "no data.cdb is served yet" in report.error
    static.write_text(static.read_text().replace("?not a record\n", ""))
    assert apply.run(cfg).ok
    static.write_text(static.read_text() + "?bad again\n")
    report = apply.run(cfg)
    assert f"{static}:4: fix it there; the old data.cdb keeps serving" in report.error
