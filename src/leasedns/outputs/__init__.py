"""Where the merged truth goes: one module per kind of DNS server, each an `Output`.

An output imports the model and the fs helpers, never the engine or the journal:
it is handed what to serve and answers what it serves.
"""

from __future__ import annotations

from typing import Protocol

from leasedns.model import Changes, Desired, Serving


class Output(Protocol):
    """One DNS server that leasedns publishes into."""

    name: str

    def serving(self) -> Serving:
        """What it serves now: the outcome it was last brought to (when it can tell) and its
        dynamic records (for the guard, `check` and `reconcile`)."""
        ...

    def publish(self, desired: Desired, changes: Changes) -> object:
        """Serve the outcome `changes.token`: apply `changes` when it serves `changes.base`,
        else serve `desired` whole. Raises PublishError; what it served stays served."""
        ...
