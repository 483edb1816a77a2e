"""The repository documents itself: nothing in it cites a design file that lives elsewhere."""

from __future__ import annotations

import subprocess

from helpers import ROOT

# Files of the brief the project started from; spelled in pieces so this file does not cite them.
OUTSIDE = ("DESIGN" + ".md", "LAB-NOTES" + ".md", "STYLE" + ".md", "../" + "shared/")


def test_no_file_cites_a_document_outside_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "docs/design.md" in files
    cited = []
    for name in files:
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary fixtures; files removed in the work tree
        cited += [f"{name}: {ref}" for ref in OUTSIDE if ref in text]
    assert cited == []


def test_design_names_every_state_file_the_readme_lists() -> None:
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    for name in (
        "journals.json",
        "merge-state.sqlite",
        "installation-id",
        "inbox.json",
        "last-build.json",
        "sync.json",
        "compact.json",
        ".incoming-",
    ):
        assert name in design, name
