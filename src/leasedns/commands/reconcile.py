"""`leasedns reconcile`: compare the journals with dhcpd.leases and dhcpd.conf, and every output
with the journals' merge; repair the drift."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, TextIO

from leasedns import journal, outputs
from leasedns.commands.check import OutputReport, check_outputs, output_lines
from leasedns.config import Config
from leasedns.engine import cache as mergestate
from leasedns.engine import guard, store
from leasedns.engine.resolve import Resolved
from leasedns.engine.rules import Aggregates
from leasedns.engine.state import State
from leasedns.errors import GuardError, LeasednsError, PublishError
from leasedns.fsutil import InputFileError, gc_paused
from leasedns.journal import identity, signing
from leasedns.model import (
    INFINITE_LEASE,
    MAX_TIME_US,
    MIN_TIME_US,
    Event,
    Kind,
    Record,
    Settings,
    Statics,
    format_time,
)
from leasedns.names import fqdn, label_for
from leasedns.outputs.tinydns import served_pairs
from leasedns.sources import statics
from leasedns.sources.dhcpd.leases import LeaseFile, newest_per_address, read_leases

# A lease file this much older than the newest journal event cannot prove that
# an address it does not mention is free.
FRESH_SECS = 300
NO_LEASE_FILES = (
    "{path}: dhcpd.leases lists no lease files: the journals were not compared with any; "
    "only the outputs were compared with the journals' merge"
)


@dataclass(frozen=True, slots=True)
class Item:
    """One difference between what is published and what dhcpd knows."""

    kind: str  # missing | renewal | wrong-address | unknown-to-journals | stale | static | unnamed
    ip: str
    mac: str
    name: str
    detail: str
    fix: Event | None = None


@dataclass(slots=True)
class Drift:
    """Everything reconcile found, and whether removals were held back."""

    items: list[Item] = field(default_factory=list)
    held: str = ""  # why stale removals were not proposed (guard), "" when they were
    problems: list[str] = field(default_factory=list)
    # Each output's holdings against the journals' merge (before any repair).
    outputs: list[OutputReport] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # outputs the repair changed
    notes: list[str] = field(default_factory=list)  # what was not compared, and why

    @property
    def critical(self) -> bool:
        """The guard tripped, the lease files are damaged, a repair failed, or an output
        cannot tell what it holds."""
        return bool(self.held or self.problems or any(o.unreachable for o in self.outputs))

    @property
    def differences(self) -> int:
        """The items and the outputs' differences."""
        return len(self.items) + sum(len(o.differences) for o in self.outputs)

    @property
    def level(self) -> int:
        """0 in sync, 1 drift (fixable), 2 critical (guard tripped, lease files damaged, an
        output unreachable)."""
        if self.critical:
            return 2
        drift = any(i.kind != "unnamed" for i in self.items)
        return 1 if drift or any(o.differences for o in self.outputs) else 0

    def fixes(self) -> list[Event]:
        return [i.fix for i in self.items if i.fix is not None]


class Live(NamedTuple):
    """A live binding as the journals' merge has it."""

    mac: str
    start_us: int
    end: int | None


@dataclass(frozen=True, slots=True)
class Merged:
    """What compare needs of the journals' merge (see `merged_from`)."""

    live: dict[str, Live]  # ip -> its live binding
    published: dict[str, str]  # ip -> the dynamic name it publishes
    names_by_mac: dict[str, str]  # MAC -> the name of its latest named commit
    known_macs: set[str]  # every MAC some journal event speaks of
    newest_us: int  # the newest journal event


def merged_from(res: Resolved, agg: Aggregates) -> Merged:
    """The `Merged` of an up-to-date resolve outcome and the aggregates it was made from.

    Reads the columns it needs straight from the merge state's tables (decoding
    100,000 whole rows would cost more than the rest of reconcile's compare).
    """
    lat = store.columns(agg.latest, mergestate.LATEST, ("t", "mac", "client", "host"))
    ends = store.columns(agg.ends, mergestate.ENDS, ("t",))
    outcome = store.columns(res.outcome, mergestate.OUTCOME, ("end", "name"))
    new = tuple.__new__  # Live(...) without its Python-level __new__, 100,000 times
    live = {ip: new(Live, (m[1], m[0], o[0])) for ip, o in outcome.items() for m in (lat[ip],)}
    # A name one address claims, that address publishes; only those several claim are
    # among the rivals, and the winner table says which one won (see `resolved._claim`).
    # Cheaper than reading the winner table whole.
    contested = list(res.rivals)
    published = {ip: o[1] for ip, o in outcome.items() if o[1] is not None}
    if contested:
        taken = set(contested)
        published = {ip: n for ip, n in published.items() if n not in taken}
        for name in contested:
            w = res.winner.get(name)
            if w is not None:
                published[w] = name
    # Per MAC its latest named commit: the partner's lease file has no names. Every row is
    # a commit of another address, so (start, address) orders them as Event.key() does.
    best: dict[str, tuple[int, str, str | bytes]] = {}
    for ip, (t, mac, client, host) in lat.items():
        if client or host:
            cur = best.get(mac)
            if cur is None or (t, ip) > cur[:2]:
                best[mac] = (t, ip, host or client)
    return Merged(
        live,
        published,
        {mac: store.text_out(b[2]) for mac, b in best.items()},
        {*map(itemgetter(1), lat.values()), *map(itemgetter(1), ends)},
        max(
            max(map(itemgetter(0), lat.values()), default=0),
            max(map(itemgetter(0), ends.values()), default=0),
        ),
    )


def compare(
    files: list[LeaseFile],
    merged: Merged,
    statics_: Statics,
    published: set[tuple[str, str]],
    s: Settings,
    cfg_peer: str,
    now: int,
    files_mtime: float,
    force: bool = False,
    guard_fraction: float = 0.5,
    guard_min: int = 10,
) -> Drift:
    """The drift between lease files + dhcpd.conf and the journals' merge (pure).

    `published` holds the (name, ip) pairs of the current data file, to report
    static hosts that are not published. Corrective events are commits with
    the lease's own start and length (so the most recent start still wins) and
    releases dated when the lease file says the lease ended.
    """
    d = Drift()
    for f in files:
        d.problems.extend(str(p) for p in f.problems)
    names = merged.names_by_mac
    hostnames: dict[tuple[str, str], str] = {}
    for f in files:
        for lease in f.leases:
            if lease.client_hostname and lease.mac:
                hostnames[(lease.ip, lease.mac)] = lease.client_hostname
    macs_in_journals = merged.known_macs
    winners = merged.live
    dynamic = merged.published
    name_ip = {name: ip for ip, name in dynamic.items()}
    static_ips = {h.ip for h in statics_.hosts}
    newest = list(newest_per_address(files))
    seen = set()
    removals: list[Item] = []

    for b in newest:
        seen.add(b.ip)
        if b.ip in static_ips or not b.mac:
            continue
        w = winners.get(b.ip)
        live = b.state == "active" and (b.ends is None or b.ends > now)
        if live:
            if (
                w is not None
                and w.mac == b.mac
                and (w.end is None or (b.ends is not None and w.end >= b.ends))
            ):
                continue  # in sync: the common case, so checked before anything else
            raw = hostnames.get((b.ip, b.mac)) or names.get(b.mac, "")
            start_us = (b.starts or now) * 1_000_000
            if not MIN_TIME_US <= start_us < MAX_TIME_US:
                # The journal reader refuses such a time: journaling it would lose the fix.
                d.problems.append(
                    f"lease {b.ip} ({b.mac}): starts at {format_time(start_us)}, outside "
                    f"{format_time(MIN_TIME_US)} .. {format_time(MAX_TIME_US)}; not journaled "
                    "(is the clock of the dhcpd that wrote it set?)"
                )
                continue
            # An end past what a lease length can hold is as good as never.
            secs = (
                INFINITE_LEASE
                if b.ends is None
                else min(INFINITE_LEASE, max(1, b.ends - (b.starts or now)))
            )
            fix = Event(Kind.COMMIT, start_us, b.ip, b.mac, raw, "", secs, cfg_peer, "reconcile")
            label = label_for(raw, s.domain, s.name_policy).label if raw else None
            name = fqdn(label, s.domain) if label else raw
            if not raw:
                d.items.append(
                    Item(
                        "unnamed",
                        b.ip,
                        b.mac,
                        "",
                        "live lease with no name in any lease file or journal",
                    )
                )
                continue
            if w is not None and w.mac == b.mac:
                d.items.append(
                    Item(
                        "renewal",
                        b.ip,
                        b.mac,
                        name,
                        f"journals end the lease at {w.end}, the lease file at {b.ends}",
                        fix,
                    )
                )
            elif b.mac not in macs_in_journals:
                d.items.append(
                    Item(
                        "unknown-to-journals",
                        b.ip,
                        b.mac,
                        name,
                        "the lease files know this client, no journal does",
                        fix,
                    )
                )
            elif label and name in name_ip and name_ip[name] != b.ip:
                d.items.append(
                    Item("wrong-address", b.ip, b.mac, name, f"published at {name_ip[name]}", fix)
                )
            else:
                d.items.append(
                    Item(
                        "missing",
                        b.ip,
                        b.mac,
                        name,
                        "live in the lease file, not in the journals",
                        fix,
                    )
                )
        elif w is not None and b.ip in dynamic:
            ended = b.ends if b.ends is not None else now
            # Only a lease file that changed after the journals' commit can say it ended.
            if max(ended, b.starts or 0) * 1_000_000 >= w.start_us:
                # dated when the lease ended, but never later than now (a journalable time)
                t = max(min(ended, now) * 1_000_000, w.start_us)
                removals.append(
                    Item(
                        "stale",
                        b.ip,
                        w.mac,
                        dynamic[b.ip],
                        f"the lease file says {b.state} since {ended}",
                        Event(Kind.RELEASE, t, b.ip, w.mac, "", "", None, cfg_peer, "reconcile"),
                    )
                )
    newest_event = merged.newest_us / 1e6
    fresh = files and files_mtime >= newest_event - FRESH_SECS
    for ip, name in dynamic.items():
        if ip not in seen and fresh:
            w = winners[ip]
            removals.append(
                Item(
                    "stale",
                    ip,
                    w.mac,
                    name,
                    "no lease file mentions this address",
                    Event(
                        Kind.RELEASE,
                        max(now * 1_000_000, w.start_us),
                        ip,
                        w.mac,
                        "",
                        "",
                        None,
                        cfg_peer,
                        "reconcile",
                    ),
                )
            )
    live_dynamic = len(dynamic)
    if not force:
        if not any(f.leases for f in files) and live_dynamic:
            d.held = "the lease files hold no leases at all"
        elif d.problems and removals:
            d.held = "a lease file is damaged or cut short"
        elif live_dynamic >= max(guard_min, 1) and len(removals) > guard_fraction * live_dynamic:
            d.held = f"{len(removals)} of {live_dynamic} published names would be removed"
    if d.held:
        d.items.extend(
            Item(r.kind, r.ip, r.mac, r.name, r.detail + " (not removed: guard)") for r in removals
        )
    else:
        d.items.extend(removals)
    for h in statics_.hosts:
        if (h.name, h.ip) not in published:
            d.items.append(
                Item(
                    "static",
                    h.ip,
                    "",
                    h.name,
                    f"dhcpd.conf host ({h.where}) not in the published data",
                )
            )
    d.items.sort(key=lambda i: (i.kind, i.ip, i.name))
    return d


def run(cfg: Config, fix: bool, force: bool = False, now: int | None = None) -> Drift:
    """Read everything, compute the drift and, with `fix`, journal the corrections and build.
    Without lease files, only the outputs are compared with the merge (and repaired)."""
    with gc_paused():  # 100,000s of long-lived objects and no cycles
        return _run(cfg, fix, force, now)


def _run(cfg: Config, fix: bool, force: bool, now: int | None) -> Drift:
    from leasedns.commands import apply

    now = int(time.time()) if now is None else now
    files = []
    mtime = 0.0
    for p in cfg.lease_files:
        try:
            files.append(read_leases(str(p)))
            mtime = max(mtime, os.stat(p).st_mtime)
        except OSError as e:
            raise LeasednsError(
                f"{p}: cannot read the lease file: {e.strerror}; check dhcpd.leases in the config"
            ) from None
        except InputFileError as e:
            raise LeasednsError(f"{e}; check dhcpd.leases in the config") from None
    statics_ = statics.load(cfg)
    s = Settings.from_config(cfg)
    try:
        published = served_pairs((cfg.tinydns_root / "data").read_bytes())
    except FileNotFoundError:
        published = set()
    # The engine's state kept by apply, brought up to date as a build would (in memory:
    # reconcile only reads it, so it runs beside apply and as any user who can read it).
    with State.open(cfg, now, keep=False) as state:
        up, agg = state.outcome(statics_)
        if files:
            drift = compare(
                files,
                merged_from(up.resolved, agg),
                statics_,
                published,
                s,
                cfg.peer,
                now,
                mtime,
                force,
                cfg.guard_fraction,
                cfg.guard_min,
            )
        else:
            # The outputs are still compared with the journals' merge and repaired: what a
            # server lost (BIND reloaded from its file, Unbound restarted) needs no lease file.
            drift = Drift(notes=[NO_LEASE_FILES.format(path=cfg.path)])
        # Each output against the journals' merge (its dynamic records), asked of the output.
        outs = outputs.configured(cfg, statics_)
        current = (up.changes.base, up.dynamic) if not up.changes else None
        drift.outputs = check_outputs(outs, state.desired(up, statics_).dynamic, now, current)
        fixes = state.stamp(drift.fixes()) if fix else []
    if fix:
        if fixes:
            owner = identity.installation_id(cfg.state_dir, cfg.journal_dir / cfg.peer)
            key = signing.journal_key(cfg.state_dir)
            journal.append(cfg.journal_dir / cfg.peer, fixes, owner=owner, key=key)
        report = apply.run(cfg, force=force, statics=statics_)
        if not report.ok:
            drift.problems.append(f"build after reconcile failed: {report.error}")
        drift.repaired, problems = repair(cfg, statics_, force)
        drift.problems += problems
        if fixes and cfg.partners:
            from leasedns.journal import sync

            sync.run(cfg, wait=False)
    return drift


# The outcome a repaired output serves is named by no token of the merge state: the next
# apply then brings it up to date from what it holds, never by changes from another outcome.
REPAIRED = ""


def repair(cfg: Config, statics_: Statics, force: bool) -> tuple[list[str], list[str]]:
    """Bring every output to the journals' merge from what it holds, asked of it: the drift
    a build does not see (a build trusts the note of its last publish). Under the build lock,
    each output on its own; the mass-delete guard applies unless `force`.

    An output that holds the merge's records exactly is left alone. Returns the outputs
    whose publish changed something, and the problems."""
    from leasedns.commands import apply

    repaired: list[str] = []
    problems: list[str] = []
    with apply.build_lock(cfg), State.open(cfg, int(time.time()), keep=False) as state:
        try:  # the journals' guard: what a build may not publish, a repair may not either
            apply.check_journals(cfg, force)
        except GuardError as e:
            why = str(e).replace("leasedns apply --force", "leasedns reconcile --force")
            return [], [f"outputs not repaired: {why}"]
        up = state.advance(statics_)
        desired = state.desired(up, statics_)
        wanted: list[Record] | None = None
        for out in outputs.configured(cfg, statics_):
            try:
                current = out.proven and up.changes.base and not up.changes
                if current and out.serving().token == up.changes.base:
                    continue  # it holds the outcome the build published, proven
                if wanted is None:
                    wanted = desired.dynamic()
                changes = guard.changes_between(out.held(), wanted, REPAIRED, state.now)
                if not changes:
                    continue  # it holds the merge's records: its note stays good
                if not force:
                    guard.check(
                        changes, state.known_ips, state.now, cfg.guard_fraction, cfg.guard_min
                    )
                done = out.publish(desired, changes)
            except GuardError as e:
                why = str(e).replace("leasedns apply --force", "leasedns reconcile --force")
                problems.append(f"output {out.name}: not repaired: {why}")
                continue
            except (PublishError, OSError) as e:
                problems.append(f"output {out.name}: not repaired: {outputs.reason(out.name, e)}")
                continue
            except LeasednsError:
                raise
            except Exception as e:  # a bug in one output: the others are still repaired
                problems.append(f"output {out.name}: not repaired: {outputs.a_bug(e)}")
                continue
            if done.changed:
                repaired.append(out.name)
    return repaired, problems


def as_text(d: Drift, fixed: bool) -> str:
    word = ("OK", "WARNING", "CRITICAL")[d.level]
    lines = [
        f"leasedns reconcile {word}: {d.differences} differences"
        + (f", {len(d.fixes())} corrective events journaled" if fixed and d.fixes() else "")
    ]
    lines += [f"note: {n}" for n in d.notes]
    lines += [f"problem: {p}" for p in d.problems]
    for o in d.outputs:
        lines += output_lines(o)
    lines += [f"output {name}: repaired from what it held" for name in d.repaired]
    if d.held:
        lines.append(
            f"guard: stale names kept because {d.held}; check the lease files, then "
            "run `leasedns reconcile --force` if the removal is right"
        )
    lines += [f"{i.kind:20} {i.ip:15} {i.mac:17} {i.name or '-'}: {i.detail}" for i in d.items]
    return "\n".join(lines) + "\n"


def as_json(d: Drift) -> str:
    import json

    return (
        json.dumps(
            {
                "level": d.level,
                "held": d.held,
                "problems": d.problems,
                "notes": d.notes,
                "items": [{k: v for k, v in asdict(i).items() if k != "fix"} for i in d.items],
                "outputs": [asdict(o) for o in d.outputs],
                "repaired": d.repaired,
            },
            indent=1,
        )
        + "\n"
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "reconcile",
        help="compare with dhcpd.leases and dhcpd.conf, and every output; repair drift",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report only (exit 0/1/2)")
    mode.add_argument("--fix", action="store_true", help="journal corrections and build (default)")
    p.add_argument(
        "--force",
        action="store_true",
        help="remove stale names even when the lease files look empty, damaged or much fewer",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=main)
    return p


def main(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """`leasedns reconcile`. With --check the drift's level (0 in sync, 1 drift, 2 critical);
    else 2 when removals were held back, the lease files are damaged or an output was not
    repaired (an output that cannot tell what it holds is not), 0 otherwise."""
    drift = run(cfg, fix=not args.check, force=args.force)
    out.write(as_json(drift) if args.json else as_text(drift, not args.check))
    return drift.level if args.check else (2 if drift.held or drift.problems else 0)
