"""The BIND key file reader: every algorithm tsig-keygen writes, and bad files named by line."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from helpers import tool
from leasedns.errors import ConfigError
from leasedns.outputs import tsigkey


@pytest.mark.parametrize("algorithm", tsigkey.ALGORITHMS)
def test_reads_what_tsig_keygen_writes(tmp_path: Path, algorithm: str) -> None:
    text = subprocess.run(
        [tool("tsig-keygen"), "-a", algorithm, "ddns-key.lab"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / "k.key"
    path.write_text(text)
    key = tsigkey.read(path)
    assert (key.name, key.algorithm) == ("ddns-key.lab", algorithm)
    secret = text.split('secret "', 1)[1].split('"', 1)[0]
    assert key.secret == base64.b64decode(secret)


def test_comments_and_spacing_are_allowed() -> None:
    text = (
        "# made by hand\n"
        'key "leasedns." { // the updater\n'
        "  algorithm HMAC-SHA256; /* upper case\n   is fine */\n"
        '  secret "YWJj";\n'
        "};\n"
    )
    assert tsigkey.parse(text) == tsigkey.TsigKey("leasedns", "hmac-sha256", b"abc")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "k.key:1: holds no key: the file tsig-keygen writes holds one"),
        ("garbage\n", "k.key:1: expected `key \"name\" { ... };`, found 'garbage'"),
        (
            'key "x" {\n algorithm hmac-sha256;\n secret "YQ=="\n};\n',
            "k.key:4: expected ';' after the secret, found '}'",
        ),
        (
            'key "x" {\n algorithm sha999;\n secret "YQ==";\n};\n',
            "k.key:2: key 'x': algorithm 'sha999' is not one of hmac-md5, hmac-sha1, "
            "hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512",
        ),
        (
            'key "x" {\n algorithm hmac-sha256;\n secret "!!notbase64";\n};\n',
            "k.key:3: key 'x': the secret is not base64",
        ),
        ('key "x" {\n algorithm hmac-sha256;\n};\n', "k.key:1: key 'x' has no secret"),
        (
            'key "x" {\n algorithm hmac-md5;\n algorithm hmac-md5;\n',
            "k.key:3: the key gives its algorithm twice",
        ),
        (
            'key "x" {\n owner "me";\n};\n',
            "k.key:2: unknown key field 'owner'; a key has algorithm and secret",
        ),
        ('key "x" {\n /* not closed\n', "k.key:2: not a key file: an unterminated comment"),
        (
            'key "a" { algorithm hmac-md5; secret "YQ=="; };\n'
            'key "b" { algorithm hmac-md5; secret "YQ=="; };\n',
            "k.key:1: holds 2 keys; leasedns signs with one: the file tsig-keygen writes holds one",
        ),
    ],
)
def test_bad_key_files_are_named_by_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        tsigkey.parse(text, "k.key")
    assert str(e.value) == message


def test_missing_binary_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such key file; make it with `tsig-keygen"):
        tsigkey.read(tmp_path / "none.key")
    (tmp_path / "bin.key").write_bytes(b'key "x" {\n\xff')
    with pytest.raises(
        ConfigError, match=r"bin.key:2: not a key file \(a byte that is not ASCII\)"
    ):
        tsigkey.read(tmp_path / "bin.key")
    (tmp_path / "big.key").write_bytes(b"#" * (tsigkey.MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="is 65537 bytes, more than the 64 KiB"):
        tsigkey.read(tmp_path / "big.key")
