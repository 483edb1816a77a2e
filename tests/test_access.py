"""journal/access.py: what a partner's key may run here, decided from the command alone; and the
push real rsync makes from `leasedns sync`'s own command line is one it accepts."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from helpers import tool, write_config
from leasedns import config
from leasedns.journal import access
from leasedns.journal import sync as syncing

INBOX = "/var/lib/leasedns/journal/.incoming-dhcp-a"
HOME = "/var/lib/leasedns"
PUSH = "rsync --server -tre.iLsfxCIvu --timeout=60 --delete-after --stats . "


def decide(command: str | None) -> access.Decision:
    return access.decide(command, "dhcp-a", INBOX, HOME)


@pytest.mark.parametrize(
    "dest",
    [
        INBOX + "/",  # the README's rsync_target, as sync appends the inbox
        INBOX,
        "journal/.incoming-dhcp-a/",  # a target relative to the home directory
        "/var/lib/leasedns//journal/./.incoming-dhcp-a/",
    ],
)
def test_the_push_into_its_own_inbox_is_rooted_there(dest: str) -> None:
    got = decide(PUSH + dest)
    assert got == access.Push(
        "rsync --server -tre.iLsfxCIvu --timeout=60 --delete-after --stats . ."
    )


@pytest.mark.parametrize(
    "extra",
    ["-vtrze.iLsfxCIvu", "--bwlimit=500", "--compress-level=3", "--fsync", "--no-W"],
)
def test_harmless_options_an_operator_may_add_are_kept(extra: str) -> None:
    got = decide(f"rsync --server -tre.LsfxCIvu {extra} --timeout=5 . {INBOX}/")
    assert isinstance(got, access.Push)
    assert got.command == f"rsync --server -tre.LsfxCIvu {extra} --timeout=5 . ."


@pytest.mark.parametrize(
    "command",
    [
        "leasedns -q apply",
        "/usr/bin/leasedns -q apply",
        "/opt/leasedns/bin/leasedns apply",
        "leasedns -q -c /etc/leasedns/leasedns.yaml apply",
        "leasedns --config=/tmp/other.yaml -v apply",
    ],
)
def test_the_notify_forms_wake_apply(command: str) -> None:
    assert decide(command) == access.Wake()


def test_true_is_the_connection_check() -> None:
    assert decide("true") == access.Check()


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (None, "no command (an interactive login)"),
        ("", "no command"),
        ("''", "no program named"),
        ("sh", "'sh' is neither"),
        ("cat /etc/bind/leasedns.key", "'cat' is neither"),
        ("bash -c 'leasedns apply'", "'bash' is neither"),
        ("scp -f /etc/passwd", "'scp' is neither"),
        ("internal-sftp", "'internal-sftp' is neither"),
        ("rsync --daemon", "rsync without --server"),
        (f"rsync --server --sender -tre.iLsfxCIvu . {INBOX}/", "rsync --sender (a pull"),
        (PUSH.replace("--server ", "--server --sender "), "rsync --sender"),
        (PUSH + "/var/lib/leasedns/journal/dhcp-b/", "is not dhcp-a's inbox"),
        (PUSH + "/var/lib/leasedns/journal/.incoming-dhcp-c/", "is not dhcp-a's inbox"),
        (PUSH + "/var/lib/leasedns/journal/", "is not dhcp-a's inbox"),
        (PUSH + "/etc/", "is not dhcp-a's inbox"),
        (PUSH + INBOX + "/../dhcp-b/", "contains `..`"),
        (PUSH + INBOX + "/../.incoming-dhcp-a/", "contains `..`"),
        (PUSH + "../../../etc/", "contains `..`"),
        (PUSH + f"{INBOX}/ /etc/", "2 destinations"),
        (PUSH.replace(" . ", " "), "without its `.`"),
        (f"rsync --server -ltre.iLsfxCIvu . {INBOX}/", "-l (creates symlinks)"),
        (f"rsync --server -logDtpre.iLsfxCIvu . {INBOX}/", "-D (creates devices)"),
        (f"rsync --server -ptre.iLsfxCIvu . {INBOX}/", "-p (sets permissions)"),
        ("rsync --server -stre.iLsfxCIvu", "-s (sends the arguments"),
        (f"rsync --server -te.iLsfxCIvu . {INBOX}/", "without -r and -t"),
        (f"rsync --server -tre.i --inplace . {INBOX}/", "--inplace is not"),
        (f"rsync --server -tre.i --partial . {INBOX}/", "--partial is not"),
        (f"rsync --server -tre.i --temp-dir=/tmp . {INBOX}/", "--temp-dir is not"),
        (f"rsync --server -tre.i --log-file=/tmp/x . {INBOX}/", "--log-file is not"),
        (f"rsync --server -tre.i --timeout=5;id . {INBOX}/", "'--timeout=5;id': not a value"),
        (f"rsync --server -tre.i --stats=1 . {INBOX}/", "'--stats=1': not a value"),
        ("rsync --server -tre.i . 'unbalanced", "does not split into words"),
        ("leasedns -q apply --force", "apply --force: the partner may only wake apply"),
        ("leasedns status", "may only run `leasedns apply`"),
        ("leasedns -c apply", "may only run `leasedns apply`"),
        ("leasedns partner-access dhcp-b", "may only run `leasedns apply`"),
    ],
)
def test_everything_else_is_refused_with_its_reason(command: str | None, why: str) -> None:
    with pytest.raises(access.Refused) as e:
        decide(command)
    assert why in str(e.value)
    assert "\n" not in str(e.value)


def test_a_refused_command_is_quoted_on_one_short_line() -> None:
    assert access.shown("cat /etc/passwd") == "'cat /etc/passwd'"
    assert access.shown("a\nb") == "'a\\nb'"
    assert len(access.shown("x" * 10_000)) < access.SHOWN + 10
    assert access.shown(None) == "(none)"


@pytest.mark.integration
@pytest.mark.parametrize(
    "rsync_args",
    [[], ["-z", "--bwlimit=1000"], ["-v", "--compress-level=9", "--fsync"]],
)
def test_the_push_leasedns_sync_makes_is_accepted(tmp_path: Path, rsync_args: list[str]) -> None:
    """Real rsync, run with the command line sync makes, says what it asks of the server; a
    stand-in for ssh (`-l USER HOST COMMAND...`) records it. (The push through a real sshd is
    test_partner_access.py's.)"""
    rsync = tool("rsync")
    remote = tmp_path / "remote-command"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(f'#!/bin/sh\nshift 3\nprintf "%s" "$*" > {remote}\nexit 1\n')
    fake_ssh.chmod(0o755)
    cfg = config.load(
        str(
            write_config(
                tmp_path,
                peer="dhcp-a",
                sync={
                    "rsync": rsync,
                    "rsync_args": ["-e", str(fake_ssh), *rsync_args],
                    "partners": [
                        {
                            "name": "dhcp-b",
                            "rsync_target": "leasedns@dhcp-b:/var/lib/leasedns/journal/",
                        }
                    ],
                },
            )
        )
    )
    (cfg.journal_dir / "dhcp-a").mkdir(parents=True)
    argv = syncing.rsync_command(cfg, cfg.partners[0])
    subprocess.run(argv, capture_output=True, timeout=60, check=False)
    command = remote.read_text()
    assert command.endswith(f" . {INBOX}/")
    got = decide(command)
    assert isinstance(got, access.Push)
    assert shlex.split(got.command)[-2:] == [".", "."]
