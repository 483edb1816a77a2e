"""A lost installation id is named as lost, with the id to put back, never made anew."""

from __future__ import annotations

from pathlib import Path

from helpers import hook, tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply, status
from leasedns.journal import identity


def test_a_deleted_installation_id_says_which_id_to_restore(tmp_path: Path) -> None:
    tool("tinydns-data")
    cfg = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.10", "02:00:00:00:00:10", "pc10", "", "600")
    assert main(["-c", cfg.path, "-q", "apply"]) == 0
    id_file = cfg.state_dir / identity.ID_FILE
    own = cfg.journal_dir / cfg.peer
    the_id = id_file.read_text().strip()
    assert journal.read_owner(own) == the_id

    id_file.unlink()
    hook(cfg, "commit", "192.0.2.11", "02:00:00:00:00:11", "pc11", "", "600")
    assert main(["-c", cfg.path, "-q", "apply"]) == 1
    last = apply.load_report(cfg)["last"]
    assert isinstance(last, dict)
    error = str(last["error"])
    assert error.startswith(
        f"{id_file} is missing, but this peer's journal {own} was written by installation "
        f"{the_id} (its .owner)."
    )
    assert f"put the id back: `echo {the_id} > {id_file}`, then `chown` it" in error
    assert f"If another installation shares {cfg.journal_dir} under the same `peer:`" in error
    assert "remove" not in error  # not the advice to give the journal away
    assert not id_file.exists()  # no new id was made to clash with the journal's
    assert len(list(cfg.spool_dir.glob("ev-*"))) == 1  # the event waits
    st = status.gather(cfg)
    assert st.level == 2 and f"{id_file} is missing" in status.as_text(cfg, st)
    # `record` says the same rather than making an id.
    assert main(["-c", cfg.path, "-q", "record", "commit", "192.0.2.12", "2:0:0:0:0:12"]) == 1
    assert not id_file.exists()

    # The advice, followed: the waiting event is published.
    id_file.write_text(the_id + "\n")
    assert main(["-c", cfg.path, "-q", "apply"]) == 0
    assert "pc11.lab.example" in (cfg.tinydns_root / "data").read_text()
    assert status.gather(cfg).level == 0
