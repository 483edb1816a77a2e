"""Where the merged truth goes: one module per kind of DNS server, each an `Output`.

An output imports the model and the fs helpers, never the engine or the journal:
it is handed what to serve and answers what it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from leasedns.model import Changes, Desired, Record, Serving, Statics

if TYPE_CHECKING:
    from leasedns.config import Config
    from leasedns.fsutil import Runner


class Published(Protocol):
    """What one publish did (for the build report)."""

    @property
    def changed(self) -> bool:
        """What the server serves changed."""
        ...

    @property
    def compiled(self) -> bool:
        """The server-side step ran and succeeded (tinydns-data, a hosts file's reload, an
        RFC 2136 update applied)."""
        ...

    @property
    def compile_secs(self) -> float: ...


class Output(Protocol):
    """One DNS server that leasedns publishes into."""

    name: str
    # True when `serving()`'s token is proven by what the server holds (the digest of the
    # file it reads): an output serving the current outcome then holds exactly its records,
    # and reconcile need not ask it again.
    proven: bool

    def serving(self) -> Serving:
        """What it serves now: the outcome it was last brought to (when it can tell) and its
        dynamic records (for the guard, `check` and `reconcile`)."""
        ...

    def held(self) -> list[Record]:
        """The dynamic records the server holds for leasedns now, asked of the server (or
        file) itself, not of a note: for `check`, `show` and `reconcile`. Raises
        PublishError when it cannot tell."""
        ...

    def publish(self, desired: Desired, changes: Changes) -> Published:
        """Serve the outcome `changes.token`: apply `changes` when it serves `changes.base`,
        else serve `desired` whole. Raises PublishError; what it served stays served."""
        ...


def configured(cfg: Config, statics: Statics, runner: Runner | None = None) -> list[Output]:
    """The outputs `cfg` names, in its order, each ready to publish (a new kind: a module
    here, a branch below, a type in config.py's `outputs:` reader)."""
    from leasedns.config import HostsOutput, Rfc2136Output, UnboundOutput
    from leasedns.outputs.hosts import Hosts
    from leasedns.outputs.tinydns import Tinydns

    out: list[Output] = []
    for spec in cfg.outputs:
        if isinstance(spec, HostsOutput):
            out.append(Hosts(spec.path, spec.reload, cfg.state_dir, runner))
        elif isinstance(spec, Rfc2136Output):
            from leasedns.outputs.rfc2136 import Rfc2136

            out.append(Rfc2136(spec, cfg.ttl, cfg.reverse, cfg.state_dir))
        elif isinstance(spec, UnboundOutput):
            from leasedns.outputs.unbound import Unbound

            out.append(Unbound(spec, cfg.ttl, cfg.state_dir, runner))
        else:
            out.append(
                Tinydns(cfg.tinydns_root, cfg.tinydns_data, cfg.ttl, statics, cfg.state_dir, runner)
            )
    return out


def a_bug(e: Exception) -> str:
    """What an output's unexpected exception says (it fails that output alone)."""
    return f"{e.__class__.__name__}: {e} (a bug; please report it with the log)"


def reason(name: str, e: Exception) -> str:
    """Output `name`'s error without the name in front (for where it is said beside it)."""
    text = str(e) or e.__class__.__name__
    return text.removeprefix(f"{name}: ")
