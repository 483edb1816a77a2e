"""A partner's key can only push into its own inbox and wake apply: `leasedns partner-access` as
the forced command of a real sshd on 127.0.0.1 (its own host key, config, authorized_keys and
pid file), a real ssh client with a generated key, real rsync and rrsync, and two
installations, the pushing one running `leasedns apply` and `leasedns sync`.

sshd runs as the user running the tests and lets only that user log in: as root (CI) it needs
its privilege separation directory /run/sshd, made here when missing (and removed after);
otherwise the user's own account, whose shell must run the forced command."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import HOOK, need, tool, write_config
from leasedns import config, journal, logs
from leasedns.cli import main
from leasedns.commands import apply

pytestmark = pytest.mark.integration
LEASEDNS = shutil.which("leasedns") or str(Path(sys.executable).with_name("leasedns"))
PRIVSEP = Path("/run/sshd")
REFUSED = "leasedns: partner-access peer-a from 127.0.0.1: refused "
WAIT_SECS = 60


class Sshd:
    """A real sshd on 127.0.0.1 and a free port, everything it reads in `base`; stopped by PID."""

    def __init__(self, base: Path) -> None:
        self.binary = tool("sshd")
        keygen = tool("ssh-keygen")
        self.client = tool("ssh")
        tool("rrsync")
        user = pwd.getpwuid(os.geteuid())
        need(
            os.path.basename(user.pw_shell) not in ("nologin", "false"),
            f"sshd runs a forced command with the user's shell; {user.pw_name}'s is "
            f"{user.pw_shell}",
        )
        self.login = f"{user.pw_name}@127.0.0.1"
        self.made_privsep = False
        if os.geteuid() == 0 and not PRIVSEP.exists():
            PRIVSEP.mkdir(mode=0o755)
            self.made_privsep = True
        base.mkdir()
        self.base = base
        for key in ("host_key", "client_key"):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", str(base / key)],
                check=True,
                timeout=60,
            )
        self.key = base / "client_key"
        self.authorized = base / "authorized_keys"
        self.authorized.write_text("")
        self.known_hosts = base / "known_hosts"
        self.pid_file = base / "sshd.pid"
        self.log = base / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        for _ in range(20):  # a port found free may be taken before sshd binds it
            if self._start():
                break
        else:
            raise AssertionError(f"sshd never listened: {self.log.read_text()}")
        host_key = (base / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        self.ssh = [self.client, *self.options("-p")]

    def options(self, port: str) -> list[str]:
        """The ssh client's options (scp and sftp spell the port `-P`): only this key, only
        this host key, no config files, no questions."""
        return [
            "-F",
            "/dev/null",
            port,
            str(self.port),
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "LogLevel=ERROR",
        ]

    def _start(self) -> bool:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = self.base / "sshd_config"
        conf.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\n"
            f"HostKey {self.base / 'host_key'}\nPidFile {self.pid_file}\n"
            f"AuthorizedKeysFile {self.authorized}\n"
            # pytest's directories sit under /tmp, which StrictModes would refuse
            "StrictModes no\nUsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "PermitUserEnvironment no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        )
        self.log.write_text("")
        self.proc = subprocess.Popen(
            [self.binary, "-D", "-f", str(conf), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_SECS
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if f"Server listening on 127.0.0.1 port {self.port}." in text:
                return True
            if self.proc.poll() is not None:
                if "Address already in use" in text:
                    return False
                raise AssertionError(f"sshd exited {self.proc.returncode}: {text}")
            time.sleep(0.02)
        raise AssertionError(f"sshd did not listen within {WAIT_SECS} s: {self.log.read_text()}")

    def authorize(self, options: str) -> None:
        """authorized_keys: the client key, with these options (`command=...,restrict`)."""
        key = (self.base / "client_key.pub").read_text().strip()
        self.authorized.write_text(f"{options} {key}\n" if options else f"{key}\n")

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """`ssh login COMMAND...` (no command: a login without a terminal)."""
        return subprocess.run(
            [*self.ssh, "-T", self.login, *command],
            capture_output=True,
            text=True,
            timeout=WAIT_SECS,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert int(self.pid_file.read_text()) == self.proc.pid
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(WAIT_SECS)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.made_privsep:
            PRIVSEP.rmdir()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = None
    try:
        server = Sshd(tmp_path / "sshd")
        yield server
    finally:
        if server is not None:
            server.stop()


def forced(cfg: config.Config, partner: str = "peer-a") -> str:
    """The authorized_keys options README gives a partner's key."""
    return f'command="{LEASEDNS} -c {cfg.path} partner-access {partner}",restrict'


def installations(
    tmp: Path, sshd: Sshd, pusher: str = "peer-a"
) -> tuple[config.Config, config.Config]:
    """`pusher` (tmp/host-a) pushes over ssh into peer-b (tmp/host-b) and wakes it with the
    README's notify; peer-b pushes nowhere."""
    tool("rsync")
    tool("tinydns-data")
    (tmp / "host-a").mkdir()
    (tmp / "host-b").mkdir()
    b = config.load(str(write_config(tmp / "host-b", peer="peer-b")))
    partner = {
        "name": "peer-b",
        "rsync_target": f"{sshd.login}:{b.journal_dir}/",
        # what an unrestricted key needs on one machine; the forced command ignores the -c
        "notify": [*sshd.ssh, sshd.login, LEASEDNS, "-q", "-c", str(b.path), "apply"],
    }
    sync = {"rsync_args": ["-e", " ".join(sshd.ssh)], "partners": [partner], "timeout_secs": 60}
    a = config.load(str(write_config(tmp / "host-a", peer=pusher, sync=sync)))
    apply.ensure_dirs(a)
    apply.ensure_dirs(b)
    return a, b


def commit(cfg: config.Config, ip: str, mac: str, name: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(cfg.spool_dir), "LEASEDNS_NO_APPLY": "1"}
    subprocess.run([str(HOOK), "commit", ip, mac, name, "", "600"], env=env, check=True, timeout=10)


def leasedns(cfg: config.Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEASEDNS, "-c", str(cfg.path), *args],
        capture_output=True,
        text=True,
        timeout=WAIT_SECS * 2,
        check=False,
    )


def data(cfg: config.Config) -> bytes:
    return (cfg.tinydns_root / "data").read_bytes()


def test_a_restricted_key_pushes_and_wakes_apply_with_the_same_sync_config(
    tmp_path: Path, sshd: Sshd
) -> None:
    a, b = installations(tmp_path, sshd)
    # Today's key, unrestricted: the push and the notify work.
    sshd.authorize("")
    commit(a, "192.0.2.10", "02:00:00:00:00:10", "alice")
    done = leasedns(a, "apply")
    assert done.returncode == 0, done.stderr
    assert b"=alice.lab.example:192.0.2.10:" in data(b)

    # The same config of the pushing side, the key restricted to the forced command.
    sshd.authorize(forced(b))
    commit(a, "192.0.2.11", "02:00:00:00:00:11", "bob")
    done = leasedns(a, "apply")  # journals bob, then syncs: rsync push + notify over ssh
    assert done.returncode == 0, done.stderr
    # peer-b's apply, run by the forced command, took the copy and published bob
    assert b"=bob.lab.example:192.0.2.11:" in data(b)
    assert journal.peers(b.journal_dir) == ["peer-a", "peer-b"]
    inbox = b.journal_dir / ".incoming-peer-a"
    modes = {str(p.relative_to(inbox)): stat.S_IMODE(p.lstat().st_mode) for p in inbox.rglob("*")}
    assert modes and all(m in (0o640, 0o750) for m in modes.values()), modes
    assert not [p for p in inbox.rglob("*") if p.is_symlink()]

    # `leasedns sync` by hand: pushed and woken again
    synced = leasedns(a, "sync")
    assert (synced.returncode, synced.stdout.split(",")[0]) == (0, "peer-b: ok"), synced
    status = leasedns(a, "status")
    assert "sync peer-b: ok" in status.stdout
    # the connection check README's setup runs once
    check = sshd.run("true")
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


@pytest.fixture
def site(tmp_path: Path, sshd: Sshd) -> tuple[Sshd, config.Config, config.Config, Path]:
    """peer-a's key restricted on peer-b's side, a secret only peer-b's user may read, and a
    directory to push from."""
    a, b = installations(tmp_path, sshd)
    sshd.authorize(forced(b))
    secret = b.state_dir / "leasedns.key"
    secret.write_text("secret TSIG-KEY-BYTES\n")
    source = tmp_path / "push"
    (source / "peer-a").mkdir(parents=True)
    (source / "peer-a" / "events-00000001.jsonl").write_text("{}\n")
    return sshd, a, b, source


def refused(done: subprocess.CompletedProcess[str], why: str) -> None:
    """The forced command said no: exit status, one line naming the key, the reason."""
    assert done.returncode != 0, done
    lines = [line for line in done.stderr.splitlines() if line.startswith("leasedns: ")]
    assert len(lines) == 1 and lines[0].startswith(REFUSED), done.stderr
    assert why in lines[0], lines[0]
    assert "TSIG-KEY-BYTES" not in done.stdout + done.stderr


def rsync(sshd: Sshd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("rsync"), "-rt", "-e", " ".join(sshd.ssh), *args],
        capture_output=True,
        text=True,
        timeout=WAIT_SECS,
        check=False,
    )


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_shells_commands_and_file_transfers_are_refused(site) -> None:  # type: ignore[no-untyped-def]
    sshd, _a, b, _source = site
    secret = b.state_dir / "leasedns.key"
    refused(sshd.run(), "no command (an interactive login)")
    refused(sshd.run("sh", "-c", "id"), "'sh' is neither this partner's rsync push")
    refused(sshd.run("cat", str(secret)), "'cat' is neither")
    refused(sshd.run(f"cat {secret}; id"), "'cat' is neither")
    refused(sshd.run("leasedns", "status"), "may only run `leasedns apply`")
    refused(sshd.run("leasedns", "-q", "apply", "--force"), "the partner may only wake apply")
    # scp (the sftp protocol, and the old one) and sftp
    copy = b.state_dir.parent / "copied"
    for legacy in ([], ["-O"]):
        done = subprocess.run(
            [tool("scp"), *legacy, *sshd.options("-P"), f"{sshd.login}:{secret}", str(copy)],
            capture_output=True,
            text=True,
            timeout=WAIT_SECS,
            check=False,
        )
        assert done.returncode != 0 and not copy.exists(), done
    done = subprocess.run(
        [tool("sftp"), "-b", "-", *sshd.options("-P"), sshd.login],
        input=f"get {secret} {copy}\n",
        capture_output=True,
        text=True,
        timeout=WAIT_SECS,
        check=False,
    )
    assert done.returncode != 0 and not copy.exists(), done
    # sshd gives a subsystem's command no stderr: the forced command's exit status says no
    done = subprocess.run(
        [*sshd.ssh, "-T", "-s", sshd.login, "sftp"],
        capture_output=True,
        text=True,
        timeout=WAIT_SECS,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, ""), done


def test_rsync_anywhere_but_its_own_inbox_or_reading_is_refused(site) -> None:  # type: ignore[no-untyped-def]
    sshd, _a, b, source = site
    own = b.journal_dir / "peer-b"
    before = listing(b.state_dir)
    # into this peer's own journal, another partner's inbox, out through `..`, outside
    refused(rsync(sshd, f"{source}/", f"{sshd.login}:{own}/"), "is not peer-a's inbox")
    other = b.journal_dir / ".incoming-peer-c"
    refused(rsync(sshd, f"{source}/", f"{sshd.login}:{other}/"), "is not peer-a's inbox")
    dotdot = f"{b.journal_dir}/.incoming-peer-a/../peer-b/"
    refused(rsync(sshd, f"{source}/", f"{sshd.login}:{dotdot}"), "contains `..`")
    refused(rsync(sshd, f"{source}/", f"{sshd.login}:{b.state_dir}/"), "is not peer-a's inbox")
    # rsync in sender mode: reading this peer's journal or its key
    pulled = source.parent / "pulled"
    refused(rsync(sshd, f"{sshd.login}:{own}/", f"{pulled}/"), "rsync --sender (a pull")
    refused(rsync(sshd, f"{sshd.login}:{b.state_dir}/leasedns.key", str(pulled)), "--sender")
    assert not pulled.exists()
    # into its own inbox, but making a symlink, or with an option sync never sends
    (source / "peer-a" / "link").symlink_to(b.state_dir / "leasedns.key")
    inbox = f"{sshd.login}:{b.journal_dir}/.incoming-peer-a/"
    refused(rsync(sshd, "-l", f"{source}/", inbox), "-l (creates symlinks)")
    refused(rsync(sshd, "--partial-dir=/tmp", f"{source}/", inbox), "--partial-dir is not")
    refused(rsync(sshd, "-s", f"{source}/", inbox), "-s (sends the arguments")
    assert listing(b.state_dir) == before
    # the same push without those options goes through (rsync skips the symlink itself), with
    # options an operator may add to rsync_args too
    done = rsync(sshd, "-z", "--bwlimit=10000", "--delete-after", f"{source}/", inbox)
    assert done.returncode == 0, done.stderr
    assert listing(b.journal_dir / ".incoming-peer-a") == [
        "peer-a",
        "peer-a/events-00000001.jsonl",
    ]


def test_another_installation_with_that_key_cannot_write_its_own_inbox(
    tmp_path: Path, sshd: Sshd
) -> None:
    """peer-c pushing with peer-a's key: its sync names .incoming-peer-c/, which the key may
    not write; the pushing side's sync says why."""
    c, b = installations(tmp_path, sshd, pusher="peer-c")
    sshd.authorize(forced(b, "peer-a"))
    commit(c, "192.0.2.30", "02:00:00:00:00:30", "mallory")
    done = leasedns(c, "sync")
    assert done.returncode == 1
    assert f"{REFUSED}'rsync --server" in done.stdout, done.stdout
    assert "is not peer-a's inbox" in done.stdout
    assert not (b.journal_dir / ".incoming-peer-c").exists()
    assert listing(b.journal_dir) == ["peer-b"]


def test_a_wrong_peer_name_in_the_forced_command_is_refused(tmp_path: Path, sshd: Sshd) -> None:
    _a, b = installations(tmp_path, sshd)
    for name, why in (("../peer-b", "not a partner's peer name"), ("peer-b", "this peer's own")):
        sshd.authorize(forced(b, name))
        done = sshd.run("leasedns", "-q", "apply")
        assert done.returncode == 2, done
        assert why in done.stderr and "authorized_keys" in done.stderr


def test_a_refusal_goes_to_syslog_and_stderr_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without sshd: the command as sshd starts it (its environment), syslog a socket here."""
    cfg = write_config(tmp_path)
    sock_path = tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(WAIT_SECS)
        monkeypatch.setattr(logs, "SYSLOG", str(sock_path))
        monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "cat /etc/shadow")
        monkeypatch.setenv("SSH_CONNECTION", "192.0.2.7 40000 192.0.2.8 22")
        assert main(["-c", str(cfg), "partner-access", "peer-b"]) == 1
        logged = sock.recv(4096).decode()
    err = capsys.readouterr().err
    assert err == (
        "leasedns: partner-access peer-b from 192.0.2.7: refused 'cat /etc/shadow': 'cat' is "
        "neither this partner's rsync push into "
        f"{tmp_path}/state/journal/.incoming-peer-b/ nor `leasedns apply`\n"
    )
    assert logged.startswith("<27>leasedns[")  # daemon.err
    assert logged.endswith(
        ": leasedns.partner-access: " + err.removeprefix("leasedns: ")[:-1] + "\x00"
    )


def push_in_process(
    cfg: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """The forced command for a push it is to refuse, in this process (a push it takes would
    exec rrsync in place of pytest: that fails the test instead)."""

    def execve(*args: object) -> None:
        raise AssertionError(f"partner-access ran {args}")

    monkeypatch.setattr(os, "execve", execve)
    inbox = config.load(str(cfg)).journal_dir / ".incoming-peer-b"
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"rsync --server -tre.iLsfxCIvu . {inbox}/")
    code = main(["-c", str(cfg), "partner-access", "peer-b"])
    return code, capsys.readouterr().err


def test_an_inbox_that_is_a_symlink_is_not_pushed_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tool("rrsync")
    cfg = write_config(tmp_path)
    journal_dir = tmp_path / "state" / "journal"
    journal_dir.mkdir(parents=True)
    (journal_dir / ".incoming-peer-b").symlink_to(tmp_path)
    code, err = push_in_process(cfg, monkeypatch, capsys)
    assert code == 1
    assert err.endswith("is not a directory (a symlink?): remove it\n"), err


def test_an_rrsync_that_does_not_confine_filter_files_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An rrsync before rsync 3.5.0 lets a partner's filter rules read files here."""
    old = tmp_path / "bin" / "rrsync"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\ntouch ran\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{old.parent}:/usr/bin:/bin")
    code, err = push_in_process(write_config(tmp_path), monkeypatch, capsys)
    assert code == 1
    assert f"{old} does not pass --confine-root to rsync" in err
    assert not (tmp_path / "state" / "journal" / ".incoming-peer-b").exists()


def test_help_and_the_manual_name_the_command() -> None:
    done = subprocess.run([LEASEDNS, "--help"], capture_output=True, text=True, timeout=60)
    assert "partner-access" in done.stdout
