"""The unbound output against a real Unbound: 10,000 bindings (A + PTR: 20,000 lines).

Each side starts from the same Unbound state (our names removed with
`local_datas_remove` between runs, not timed), in one Unbound started here
(127.0.0.1, a free port, its control socket in the temp dir), and is checked
afterwards (`list_local_data` holds all 20,000 names, a sample answers by DNS):

  reference   one `unbound-control local_datas` with the same 20,000 lines on stdin
  publish     Unbound.serving() + publish() of a Desired of the 10,000 records, in
              this process (what the output does: `list_local_data`, then one
              `local_datas` batch)
  apply       `leasedns -q -c CFG apply` with the 10,000 commits in the journal and
              only the unbound output configured (process start, merge, publish):
              not judged, shown beside publish so the engine's share is visible

Judged (the issue: "10,000 bindings into Unbound in <= 2x one `unbound-control
local_datas` batch of the same lines"): publish min / reference min <= 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# dnsservers: the real Unbound the tests use
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_rfc2136 import LEASE, TTL, US, bindings, leasedns_config, run_apply, write_journal
from common import Row, exit_code, find_program, fmt, machine_note, print_table
from dnsservers import Unbound

NAME = "unbound"
TARGET = 2.0  # publish / one local_datas batch


class UnboundServer(Unbound):
    """The tests' Unbound (tests/dnsservers.py: 127.0.0.1, a free port, no upstream, its
    control socket in the temp dir), with the bench's zones and nothing of its own."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(
            tmp, zones=("lab.example", "10.in-addr.arpa"), local_data=(), local_data_ptr=()
        )

    def run_ctl(self, command: str, data: bytes = b"") -> str:
        p = subprocess.run(
            [*self.control, command], input=data, capture_output=True, timeout=120, check=False
        )
        if p.returncode != 0:
            raise RuntimeError(f"unbound-control {command}: exit {p.returncode}: {p.stderr!r}")
        return p.stdout.decode()

    def ours(self) -> list[str]:
        """Owner names of the bench's data Unbound holds (pcNNNNN and their PTRs)."""
        out = []
        for line in self.run_ctl("list_local_data").splitlines():
            owner = line.split("\t", 1)[0]
            if owner.startswith("pc") or (
                owner.endswith(".10.in-addr.arpa.") and "\tPTR\t" in line
            ):
                out.append(owner)
        return out

    def clear(self) -> None:
        """Take the bench's names out again (between runs; not timed)."""
        names = self.ours()
        if names:
            self.run_ctl("local_datas_remove", "".join(f"{n}\n" for n in names).encode())

    def answer(self, qname: str, qtype: str = "A") -> str:
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port, r.lifetime = ["127.0.0.1"], self.port, 3
        try:
            return str(r.resolve(qname, qtype)[0].to_text())
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return "none"


def check(srv: UnboundServer, binds: list[tuple[str, str, int]]) -> str:
    """ "" when Unbound holds every binding's A and PTR, else what is wrong."""
    from leasedns.model import reverse_name

    held = len(srv.ours())
    if held != 2 * len(binds):
        return f"{held} names held, not {2 * len(binds)}"
    for name, ip, _t in (binds[0], binds[len(binds) // 2], binds[-1]):
        if srv.answer(name) != ip or srv.answer(reverse_name(ip), "PTR") != name + ".":
            return f"{name} does not answer {ip} (and its PTR)"
    return ""


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindings", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each side (min is judged)")
    ap.add_argument("--skip-apply", action="store_true", help="leave out the `leasedns apply` side")
    ap.add_argument("--keep", help="work in this directory and keep it")
    args = ap.parse_args(argv)

    binary, ctl = find_program("unbound"), find_program("unbound-control")
    if not binary or not ctl:
        return [Row(NAME, "unbound not installed (apt install unbound)", 0, "n", ok=False)]
    from leasedns.config import UnboundOutput
    from leasedns.model import Changes, Desired, Record
    from leasedns.outputs.unbound import Unbound, data_lines

    tmpctx = tempfile.TemporaryDirectory(prefix="leasedns-bench-unbound-")
    tmp = Path(args.keep) if args.keep else Path(tmpctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    srv = UnboundServer(tmp / "unbound")
    ref_t: list[float] = []
    pub_t: list[float] = []
    app_t: list[float] = []
    app_compile: list[float] = []
    problems: list[str] = []
    n = args.bindings
    try:
        srv.start()
        for rep in range(args.repeat):
            now = int(time.time())
            binds = bindings(n, now)
            records = [Record(nm, ip, t // US + LEASE, True, False) for nm, ip, t in binds]
            # the reference: one local_datas batch of the lines the output sends
            data = "".join(ln for r in records for ln in data_lines(r, TTL)).encode()
            srv.clear()
            t0 = time.perf_counter()
            p = subprocess.run(
                [*srv.control, "local_datas"], input=data, capture_output=True, check=False
            )
            ref_t.append(time.perf_counter() - t0)
            bad = check(srv, binds)
            if p.returncode != 0 or b"error" in p.stdout.lower() or bad:
                problems.append(f"local_datas run {rep}: exit {p.returncode}: {bad}")
            # the output's serving + publish, a fresh output object and state
            srv.clear()
            state = tmp / f"r{rep}-pub-state"
            state.mkdir(parents=True, exist_ok=True)
            desired = Desired([], lambda rs=records: list(rs), now)
            t0 = time.perf_counter()
            out = Unbound(UnboundOutput(srv.control), TTL, state)
            out.serving()
            done = out.publish(desired, Changes("", "bench.1"))
            pub_t.append(time.perf_counter() - t0)
            bad = check(srv, binds)
            if not done.compiled or done.problems or bad:
                problems.append(f"publish run {rep}: {done.problems[:2]} {bad}")
            if args.skip_apply:
                continue
            # leasedns apply, the commits in the journal, only the unbound output
            srv.clear()
            state = tmp / f"r{rep}-apply-state"
            write_journal(state, binds)
            cfg_dir = tmp / f"r{rep}-apply"
            cfg_dir.mkdir(exist_ok=True)
            cfg = leasedns_config(
                cfg_dir, state, [{"type": "unbound", "control": list(srv.control)}]
            )
            secs, rc, report = run_apply(cfg, state)
            app_t.append(secs)
            app_compile.append(float(report.get("compile_secs", 0)))
            bad = check(srv, binds)
            if rc != 0 or report.get("dynamic") != n or bad:
                problems.append(f"apply run {rep}: exit {rc}: {report.get('error')} {bad}")
    finally:
        srv.stop()
        if not args.keep:
            tmpctx.cleanup()

    ref, pub = min(ref_t), min(pub_t)
    ref_text = f"local_datas {fmt(ref, 's')}"
    rows = [
        Row(
            NAME,
            f"one unbound-control local_datas, {2 * n:,} lines (min of {len(ref_t)}: "
            f"{'; '.join(fmt(x, 's') for x in ref_t)}) (ref)",
            ref,
            "s",
            ref_text,
            1.0,
            summary=True,
        ),
        Row(
            NAME,
            f"unbound publish (serving + publish, in-process): {n:,} bindings (min of "
            f"{len(pub_t)}: {'; '.join(fmt(x, 's') for x in pub_t)})",
            pub,
            "s",
            ref_text,
            pub / ref,
            f"<= {TARGET:g}x",
            pub / ref <= TARGET and not problems,
        ),
    ]
    if app_t:
        a = min(app_t)
        rows += [
            Row(
                NAME,
                f"leasedns apply (process), {n:,} commits in the journal, unbound only "
                f"(compile_secs {app_compile[app_t.index(a)]:.2f} s; min of {len(app_t)}; "
                "not judged)",
                a,
                "s",
                ref_text,
                a / ref,
                summary=True,
            ),
            Row(
                NAME,
                "apply minus publish: process start, journal read, merge, state (not judged)",
                a - pub,
                "s",
            ),
        ]
    if problems:
        rows.append(
            Row(NAME, "wrong results: " + " | ".join(problems)[:400], len(problems), "n", ok=False)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = collect(sys.argv[1:] if argv is None else argv)
    print_table(f"unbound local data ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
