"""The unbound output: the lines it sends, its note, its control command's failures; and a real
Unbound answering the names `leasedns apply` loads, losing them at a restart and getting them
back, never losing its own (unbound.conf's) names."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsservers import Unbound as UnboundServer
from helpers import ROOT, hook, tool, write_config
from leasedns import config
from leasedns.commands import apply
from leasedns.config import UnboundOutput
from leasedns.errors import PublishError
from leasedns.model import Changes, Desired, Record, reverse_address, reverse_name
from leasedns.outputs import configured
from leasedns.outputs.unbound import (
    CONF_NAME,
    Unbound,
    data_lines,
    memo_name,
    parse_local_data,
    ttl_of,
    valid,
)
from leasedns.sources.statics import load as load_statics

NOW = 1_900_000_000
STATIC = [Record("printer.lab.example", "192.0.2.5", None, True, True)]
DYNAMIC = [
    Record("pc1.lab.example", "192.0.2.100", NOW + 3600, True, False),
    Record("pc2.lab.example", "192.0.2.101", NOW + 3600, False, False),
]


def desired(dynamic: list[Record] = DYNAMIC) -> Desired:
    return Desired(STATIC, lambda: list(dynamic))


# --- lines and names ----------------------------------------------------------------------


def test_a_record_is_an_a_line_and_a_ptr_line_with_the_ttl_cut_to_the_lease_end() -> None:
    r = Record("pc1.lab.example", "192.0.2.100", NOW + 100, True, False)
    assert ttl_of(r, 300, NOW) == 100
    assert ttl_of(r, 60, NOW) == 60
    assert ttl_of(Record("a.lab.example", "192.0.2.1", None, True, True), 300, NOW) == 300
    assert data_lines(r, 100) == [
        "pc1.lab.example. 100 IN A 192.0.2.100\n",
        "100.2.0.192.in-addr.arpa. 100 IN PTR pc1.lab.example.\n",
    ]
    no_ptr = Record("pc2.lab.example", "192.0.2.101", None, False, False)
    assert data_lines(no_ptr, 300) == ["pc2.lab.example. 300 IN A 192.0.2.101\n"]
    assert reverse_name("10.1.2.3") == "3.2.1.10.in-addr.arpa"
    assert reverse_address("3.2.1.10.in-addr.arpa") == "10.1.2.3"
    assert reverse_address("2.1.10.in-addr.arpa") is None


@pytest.mark.parametrize(
    "name",
    [
        "a b.lab.example",
        "x.lab.example\nwww.lab.example. 1 IN A 203.0.113.6",
        "a..lab.example",
        ".lab.example",
        "-a.lab.example",
        'a"b.lab.example',
        "x" * 64 + ".lab.example",
        ("a" * 60 + ".") * 5 + "example",
        "",
    ],
)
def test_hostile_names_are_not_valid(name: str) -> None:
    assert not valid(Record(name, "192.0.2.1", None, True, False))


def test_plain_names_and_only_dotted_quads_are_valid() -> None:
    assert valid(Record("pc-1.lab.example", "192.0.2.1", None, True, False))
    assert valid(Record("x" * 63 + ".lab.example", "192.0.2.1", None, True, False))
    assert not valid(Record("pc.lab.example", "192.0.2.1 IN A 1.2.3.4", None, True, False))
    assert not valid(Record("pc.lab.example", "192.0.2.256", None, True, False))


def test_list_local_data_output_is_read_by_owner_name() -> None:
    text = (
        "www.lab.example.\t300\tIN\tA\t192.0.2.80\n\n"
        "WWW.lab.example.\t300\tIN\tA\t192.0.2.81\n\n"
        "80.2.0.192.in-addr.arpa.\t3600\tIN\tPTR\twww.lab.example.\n\n"
        "localhost.\t10800\tIN\tSOA\tlocalhost. nobody.invalid. 1 3600 1200 604800 10800\n"
        "garbage\n"
    )
    held = parse_local_data(text)
    assert held["www.lab.example"] == {(300, "A", "192.0.2.80"), (300, "A", "192.0.2.81")}
    assert held["80.2.0.192.in-addr.arpa"] == {(3600, "PTR", "www.lab.example.")}
    assert set(held) == {"www.lab.example", "80.2.0.192.in-addr.arpa", "localhost"}


def test_each_control_command_keeps_its_own_note(tmp_path: Path) -> None:
    assert memo_name(["unbound-control"]) != memo_name(["unbound-control", "-s", "/x.ctl"])
    text = (
        f"peer: a\ndomain: lab.example\nstate_dir: {tmp_path}\noutputs:\n"
        "  - type: unbound\n    control: [unbound-control, -s, /run/unbound.ctl]\n"
    )
    cfg = config.parse(text, "x.yaml")
    (out,) = configured(cfg, load_statics(cfg))
    assert out.name == "unbound unbound-control -s /run/unbound.ctl"


# --- the control command failing ------------------------------------------------------------


def test_a_missing_control_command_names_the_output_and_the_fix(tmp_path: Path) -> None:
    out = Unbound(UnboundOutput(("/nonexistent/unbound-control",)), 300, tmp_path)
    assert out.serving().token == ""
    with pytest.raises(PublishError) as info:
        out.publish(desired(), Changes("", "t1"))
    assert str(info.value).startswith(
        "unbound /nonexistent/unbound-control: `/nonexistent/unbound-control list_local_data`: "
        "/nonexistent/unbound-control not found; install unbound"
    )


def test_a_hanging_control_command_is_killed_at_the_timeout(tmp_path: Path) -> None:
    script = tmp_path / "hangs"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    out = Unbound(UnboundOutput((str(script),), 0.3), 300, tmp_path)
    out.serving()
    with pytest.raises(PublishError) as info:
        out.publish(desired(), Changes("", "t1"))
    assert str(info.value).startswith(
        f"unbound {script}: `{script} list_local_data` did not finish within 0.3 s (killed); "
        "is Unbound running"
    )


def test_an_error_for_a_line_fails_the_publish_and_leaves_the_outcome_unknown(
    tmp_path: Path,
) -> None:
    """A control command that holds nothing and refuses the first batch line: the error
    names the output and the line, and the note says the outcome is not known."""
    script = tmp_path / "refuses"
    script.write_text(
        "#!/bin/sh\ncase $1 in\n  list_local_data) exit 0;;\n"
        '  *) cat >/dev/null; echo "error parsing local-data at line 1"; exit 1;;\nesac\n'
    )
    script.chmod(0o755)
    out = Unbound(UnboundOutput((str(script),)), 300, tmp_path, clock=lambda: NOW)
    out.serving()
    with pytest.raises(PublishError, match=r"local_datas` failed \(exit 1\): error parsing"):
        out.publish(desired(), Changes("", "t1"))
    again = Unbound(UnboundOutput((str(script),)), 300, tmp_path)
    assert again.serving().token == ""


# --- a real Unbound ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with UnboundServer(tmp_path) as s:
        yield s


class Recorder:
    """A runner that runs the command and keeps each (subcommand, stdin lines)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        data = kw.get("input") or b""
        self.calls.append((args[-1], data.decode().splitlines()))
        return subprocess.run(args, **kw)

    def batches(self) -> list[tuple[str, list[str]]]:
        return [c for c in self.calls if c[0] != "list_local_data"]


@pytest.mark.integration
def test_publish_loads_whole_then_only_changes_and_leaves_unbound_conf_names(
    tmp_path: Path, server: UnboundServer
) -> None:
    rec = Recorder()
    spec = UnboundOutput(server.control)
    out = Unbound(spec, 300, tmp_path, rec, clock=lambda: NOW)
    assert out.serving().token == ""
    done = out.publish(desired(), Changes("", "t1"))
    assert (done.changed, done.compiled, done.problems) == (True, True, [])
    assert rec.batches() == [
        (
            "local_datas",
            [
                "printer.lab.example. 300 IN A 192.0.2.5",
                "5.2.0.192.in-addr.arpa. 300 IN PTR printer.lab.example.",
                "pc1.lab.example. 300 IN A 192.0.2.100",
                "100.2.0.192.in-addr.arpa. 300 IN PTR pc1.lab.example.",
                "pc2.lab.example. 300 IN A 192.0.2.101",
            ],
        )
    ]
    assert server.answer("pc1.lab.example") == "192.0.2.100"
    assert server.answer("100.2.0.192.in-addr.arpa", "PTR") == "pc1.lab.example."
    assert server.answer("printer.lab.example") == "192.0.2.5"
    # A new output object (the next apply) knows what Unbound holds, and sends only the change.
    rec.calls.clear()
    out = Unbound(spec, 300, tmp_path, rec, clock=lambda: NOW)
    serving = out.serving()
    assert serving.token == "t1"
    assert sorted(r.name for r in serving.records()) == ["pc1.lab.example", "pc2.lab.example"]
    pc3 = Record("pc3.lab.example", "192.0.2.102", NOW + 3600, True, False)
    moved = Record("pc2.lab.example", "192.0.2.103", NOW + 3600, True, False)
    changes = Changes("t1", "t2", added=[pc3], removed=[DYNAMIC[0]], changed=[(DYNAMIC[1], moved)])
    out.publish(desired([moved, pc3]), changes)
    assert rec.batches() == [
        (
            "local_datas_remove",
            ["100.2.0.192.in-addr.arpa.", "pc1.lab.example.", "pc2.lab.example."],
        ),
        (
            "local_datas",
            [
                "pc3.lab.example. 300 IN A 192.0.2.102",
                "102.2.0.192.in-addr.arpa. 300 IN PTR pc3.lab.example.",
                "pc2.lab.example. 300 IN A 192.0.2.103",
                "103.2.0.192.in-addr.arpa. 300 IN PTR pc2.lab.example.",
            ],
        ),
    ]
    assert server.answer("pc1.lab.example") == "NXDOMAIN"
    assert server.answer("100.2.0.192.in-addr.arpa", "PTR") == "NXDOMAIN"
    assert server.answer("pc2.lab.example") == "192.0.2.103"
    assert server.answer("www.lab.example") == "192.0.2.80"
    # Nothing changed: nothing sent.
    rec.calls.clear()
    out = Unbound(spec, 300, tmp_path, rec, clock=lambda: NOW)
    assert out.serving().token == "t2"
    assert not out.publish(desired([moved, pc3]), Changes("t2", "t2")).changed
    assert rec.batches() == []
    # A renewal (only the lease end moved) sends nothing: replacing the record would take
    # the name out of Unbound for a moment. The note keeps the new end.
    renewed = Record("pc3.lab.example", "192.0.2.102", NOW + 7200, True, False)
    out = Unbound(spec, 300, tmp_path, rec, clock=lambda: NOW)
    out.serving()
    done = out.publish(desired([moved, renewed]), Changes("t2", "t3", changed=[(pc3, renewed)]))
    assert (done.changed, rec.batches()) == (False, [])
    assert server.answer("pc3.lab.example") == "192.0.2.102"
    again = Unbound(spec, 300, tmp_path, rec, clock=lambda: NOW).serving()
    assert again.token == "t3" and renewed in again.records()


@pytest.mark.integration
def test_a_name_from_unbound_conf_is_never_clobbered_nor_removed(
    tmp_path: Path, server: UnboundServer, caplog: pytest.LogCaptureFixture
) -> None:
    claim = Record("www.lab.example", "192.0.2.50", NOW + 3600, True, False)
    ptr_claim = Record("pc9.lab.example", "192.0.2.80", NOW + 3600, True, False)
    out = Unbound(UnboundOutput(server.control), 300, tmp_path, clock=lambda: NOW)
    out.serving()
    with caplog.at_level(logging.WARNING, "leasedns.unbound"):
        done = out.publish(desired([claim, ptr_claim]), Changes("", "t1"))
    assert done.problems == [
        f"{out.name}: www.lab.example {CONF_NAME}; the binding 192.0.2.50 is not added "
        "(rename the client, or take the name out of unbound.conf)",
        f"{out.name}: the PTR of 192.0.2.80 {CONF_NAME}; pc9.lab.example gets its A record only",
    ]
    assert done.problems[0] in caplog.messages
    assert server.answer("www.lab.example") == "192.0.2.80"
    assert server.answer("50.2.0.192.in-addr.arpa", "PTR") == "NXDOMAIN"
    assert server.answer("pc9.lab.example") == "192.0.2.80"
    assert server.answer("80.2.0.192.in-addr.arpa", "PTR") == "www.lab.example."
    # The skipped binding waits: the next publish (of the changes only) tries it again and
    # reports it again, without saying it in the log again.
    out = Unbound(UnboundOutput(server.control), 300, tmp_path, clock=lambda: NOW)
    assert out.serving().token == "t1"
    caplog.clear()
    with caplog.at_level(logging.WARNING, "leasedns.unbound"):
        again = out.publish(desired([claim, ptr_claim]), Changes("t1", "t2"))
    assert again.problems[0] == done.problems[0] and again.changed is False
    assert done.problems[0] not in caplog.messages
    # Unbound lets go of www (taken out at run time here): the waiting binding is loaded by
    # the next publish.
    subprocess.run([*server.control, "local_data_remove", "www.lab.example."], check=True)
    out = Unbound(UnboundOutput(server.control), 300, tmp_path, clock=lambda: NOW)
    out.serving()
    loaded = out.publish(desired([claim, ptr_claim]), Changes("t2", "t3"))
    assert loaded.changed and server.answer("www.lab.example") == "192.0.2.50"
    # The names of unbound.conf stay when everything of ours goes.
    out = Unbound(UnboundOutput(server.control), 300, tmp_path, clock=lambda: NOW)
    out.serving()
    out.publish(desired([]), Changes("", "t4"))
    assert server.answer("pc9.lab.example") == "NXDOMAIN"
    assert server.answer("www.lab.example") == "NXDOMAIN"  # ours now, and gone with the lease
    assert server.answer("80.2.0.192.in-addr.arpa", "PTR") == "www.lab.example."


def unbound_config(tmp_path: Path, control: tuple[str, ...]) -> config.Config:
    """A leasedns config publishing to Unbound alone."""
    path = write_config(tmp_path, outputs=[{"type": "unbound", "control": list(control)}])
    doc = yaml.safe_load(path.read_text())
    del doc["tinydns"]
    path.write_text(yaml.safe_dump(doc))
    cfg = config.parse(path.read_text(), str(path))
    assert [type(o).__name__ for o in cfg.outputs] == ["UnboundOutput"]
    return cfg


@pytest.mark.integration
def test_apply_publishes_into_unbound_and_catches_up_after_restarts_and_outages(
    tmp_path: Path, server: UnboundServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = unbound_config(tmp_path, server.control)
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
    hook(cfg, "commit", "192.0.2.104", "2:0:0:0:0:4", "pc4", "", "4")
    with caplog.at_level(logging.WARNING, "leasedns.unbound"):
        hook(cfg, "commit", "192.0.2.50", "2:0:0:0:0:5", "www", "", "600")
        report = apply.run(cfg)
    assert (report.ok, report.changed, report.compiled) == (True, True, True), report.error
    assert server.answer("pc1.lab.example") == "192.0.2.100"
    assert server.answer("101.2.0.192.in-addr.arpa", "PTR") == "pc2.lab.example."
    assert server.answer("pc4.lab.example") == "192.0.2.104"
    assert server.ttl("pc4.lab.example") <= 4  # a lease of 4 s: a TTL of at most that
    assert server.ttl("pc1.lab.example") == 300
    # A client claiming `www`: unbound.conf's answer stays, and the log says why.
    assert server.answer("www.lab.example") == "192.0.2.80"
    assert server.answer("50.2.0.192.in-addr.arpa", "PTR") == "NXDOMAIN"
    assert any(f"www.lab.example {CONF_NAME}" in m for m in caplog.messages)
    # A release takes the name out at the next apply; an ended lease too. (`www` released:
    # no more skipped binding, so the outcome is known again and the next apply trusts it.)
    hook(cfg, "release", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "")
    hook(cfg, "release", "192.0.2.50", "2:0:0:0:0:5", "www", "", "")
    time.sleep(4.5)
    assert apply.run(cfg).ok
    assert server.answer("pc1.lab.example") == "NXDOMAIN"
    assert server.answer("100.2.0.192.in-addr.arpa", "PTR") == "NXDOMAIN"
    assert server.answer("pc4.lab.example") == "NXDOMAIN"
    assert server.answer("pc2.lab.example") == "192.0.2.101"
    assert server.answer("www.lab.example") == "192.0.2.80"
    assert Unbound(UnboundOutput(server.control), 300, cfg.state_dir).serving().token != ""
    # Unbound restarted holds none of it: the next apply loads it again.
    server.stop()
    server.start()
    assert server.answer("pc2.lab.example") == "NXDOMAIN"
    report = apply.run(cfg)
    assert (report.ok, report.changed) == (True, True), report.error
    assert server.answer("pc2.lab.example") == "192.0.2.101"
    assert server.answer("101.2.0.192.in-addr.arpa", "PTR") == "pc2.lab.example."
    # `unbound-control reload` drops it too: loaded again as well.
    subprocess.run([*server.control, "reload"], check=True, capture_output=True, timeout=30)
    assert server.answer("pc2.lab.example") == "NXDOMAIN"
    assert apply.run(cfg).ok
    assert server.answer("pc2.lab.example") == "192.0.2.101"
    # Unbound down: apply fails naming the output and what to check ...
    server.stop()
    hook(cfg, "commit", "192.0.2.103", "2:0:0:0:0:3", "pc3", "", "600")
    report = apply.run(cfg)
    assert not report.ok
    name = "unbound " + " ".join(server.control)
    assert report.error.startswith(f"{name}: `{' '.join(server.control)} list_local_data` failed")
    assert "is Unbound running" in report.error
    # ... and once it is back, the next apply catches up.
    server.start()
    report = apply.run(cfg)
    assert report.ok, report.error
    assert server.answer("pc3.lab.example") == "192.0.2.103"
    assert server.answer("pc2.lab.example") == "192.0.2.101"
    assert server.answer("www.lab.example") == "192.0.2.80"


# --- the unbound.conf snippet ---------------------------------------------------------------


def test_the_unbound_conf_snippet_passes_unbound_checkconf_and_a_broken_copy_fails(
    tmp_path: Path,
) -> None:
    checkconf = tool("unbound-checkconf")
    text = (ROOT / "conf" / "unbound-leasedns.conf").read_text()
    assert "control-use-cert: no" in text and 'local-zone: "lab.example."' in text
    good = tmp_path / "unbound.conf"
    good.write_text(text.replace("/run/unbound.ctl", str(tmp_path / "unbound.ctl")))
    ok = subprocess.run([checkconf, str(good)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(good.read_text().replace('"lab.example." static', '"lab.example." statik'))
    bad = subprocess.run([checkconf, str(broken)], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert f"{broken}:" in bad.stdout + bad.stderr and "local-zone type" in bad.stdout + bad.stderr
