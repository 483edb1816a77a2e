"""Every file an operator names (the config, a TSIG key, static data, dhcpd.conf and what it
includes) is read only when it is a regular file, without blocking, and up to a size cap; a
device, FIFO or directory in its place is an error naming the file and the fix."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import ZONES, fifo
from leasedns import config, fsutil
from leasedns.cli import main
from leasedns.commands import apply
from leasedns.errors import ConfigError, LeasednsError
from leasedns.outputs import tsigkey
from leasedns.sources import statics
from leasedns.sources.dhcpd import conf as dhcpdconf

KEY = 'key "leasedns" {\n  algorithm hmac-sha256;\n  secret "YWJj";\n};\n'
HOST = "host gw {\n  hardware ethernet 02:00:00:00:00:01;\n  fixed-address 192.0.2.1;\n}\n"


@pytest.fixture
def operator_cfg(cfg: config.Config, tmp_path: Path) -> config.Config:
    """The test config with no static data and no dhcpd.conf: each test names its own."""
    return dataclasses.replace(cfg, static_files=(), dhcpd_conf=None)


# Each reader: how to read a file at a path, the cap, the good content, and what its error
# says to fix.
Reader = tuple[Callable[[config.Config, Path], object], int, str, str]


def _config(cfg: config.Config, path: Path) -> object:
    return config.load(str(path))


def _key(cfg: config.Config, path: Path) -> object:
    return tsigkey.read(path)


def _static(cfg: config.Config, path: Path) -> object:
    return statics.load(dataclasses.replace(cfg, static_files=(path,)))


def _dhcpd(cfg: config.Config, path: Path) -> object:
    return statics.load(dataclasses.replace(cfg, dhcpd_conf=path))


def _include(cfg: config.Config, path: Path) -> object:
    main_conf = path.parent / "main.conf"
    main_conf.write_text(f'# the site\ninclude "{path}";\n')
    return statics.load(dataclasses.replace(cfg, dhcpd_conf=main_conf))


READERS: dict[str, Reader] = {
    "config": (_config, config.MAX_BYTES, "peer: a\ndomain: x.example\n", "with --config"),
    "tsig key": (_key, tsigkey.MAX_BYTES, KEY, "point tsig_key_file at the key file"),
    "static data": (_static, statics.MAX_DATA_BYTES, ZONES, "fix tinydns.static in the config"),
    "dhcpd.conf": (_dhcpd, dhcpdconf.MAX_BYTES, HOST, "fix dhcpd.conf in the config"),
    "include": (_include, dhcpdconf.MAX_BYTES, HOST, "main.conf:2: include "),
}


@contextmanager
def _in_place(kind: str, path: Path, limit: int) -> Iterator[tuple[Path, str]]:
    """Something that is not a readable operator's file at `path` (or a link to it), and what
    the error says it is."""
    if kind == "FIFO":
        with fifo(path):
            yield path, "is a FIFO (named pipe), not a regular file"
    elif kind in ("/dev/zero", "/dev/urandom"):
        path.symlink_to(kind)  # as `tsig_key_file: /dev/zero` would name it
        yield path, "is a character device, not a regular file"
    elif kind == "directory":
        path.mkdir()
        yield path, "is a directory, not a regular file"
    else:  # over the cap: a sparse file, no disk used
        with path.open("wb") as f:
            f.truncate(limit + 1)
        yield path, f"is {limit + 1} bytes, more than the {fsutil.size_text(limit)} leasedns"


@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/urandom", "FIFO", "directory", "over-size"])
@pytest.mark.parametrize("reader", list(READERS))
def test_only_a_regular_file_within_its_cap_is_read(
    operator_cfg: config.Config, tmp_path: Path, reader: str, kind: str
) -> None:
    read, limit, _good, fix = READERS[reader]
    with (
        _in_place(kind, tmp_path / "input", limit) as (path, what),
        pytest.raises(LeasednsError) as e,
    ):
        read(operator_cfg, path)
    message = str(e.value)
    assert f"{path}: {what}" in message
    assert fix in message
    if reader in ("config", "tsig key"):
        assert isinstance(e.value, ConfigError)  # the CLI's exit 2, a config mistake


@pytest.mark.parametrize("reader", list(READERS))
def test_a_symlink_to_a_regular_file_is_read(
    operator_cfg: config.Config, tmp_path: Path, reader: str
) -> None:
    read, _limit, good, _fix = READERS[reader]
    real = tmp_path / "real"
    real.write_text(good)
    (tmp_path / "link").symlink_to(real)
    assert read(operator_cfg, tmp_path / "link")


def test_read_input_refuses_what_it_cannot_open_without_opening_it(tmp_path: Path) -> None:
    with fifo(tmp_path / "f") as f, pytest.raises(fsutil.InputFileError) as e:
        fsutil.read_input(f, 10)
    assert (e.value.path, e.value.problem.split(";")[0]) == (
        str(f),
        "is a FIFO (named pipe), not a regular file",
    )
    (tmp_path / "ok").write_bytes(b"0123456789")
    assert fsutil.read_input(tmp_path / "ok", 10) == b"0123456789"
    with pytest.raises(fsutil.InputFileError, match="is 10 bytes, more than the 9 bytes"):
        fsutil.read_input(tmp_path / "ok", 9)
    with pytest.raises(FileNotFoundError):
        fsutil.read_input(tmp_path / "none", 10)


def test_a_fifo_as_static_data_fails_the_apply_instead_of_hanging_it(tmp_path: Path) -> None:
    from helpers import tool, write_config

    tool("tinydns-data")
    cfg = config.load(str(write_config(tmp_path)))
    assert apply.run(cfg).ok
    data = (cfg.tinydns_root / "data").read_bytes()
    static = cfg.static_files[0]
    static.unlink()
    with fifo(static):
        assert main(["-c", cfg.path, "-q", "apply"]) == 1
    report = apply.load_report(cfg)["last"]
    assert isinstance(report, dict)
    assert report["error"] == (
        f"{static}: is a FIFO (named pipe), not a regular file; leasedns reads only regular "
        "files here (a symlink to one is fine); fix tinydns.static in the config"
    )
    assert (cfg.tinydns_root / "data").read_bytes() == data  # the old data keeps serving
    os.unlink(static)
