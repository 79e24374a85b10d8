"""Key validation and digest parsing: pure functions."""

from __future__ import annotations

import hashlib

import pytest

from mlopsctl.errors import ExitCode, UsageError
from mlopsctl.store.base import check_key, check_prefix
from mlopsctl.store.blobs import blob_key, format_digest, parse_digest

HEX = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    "key", ["runs/abc.json", "a", "models/churn-v2/aliases/prod.json", "events/2026/05/x-1.json"]
)
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/a",
        "a/",
        "a//b",
        "./a",
        "a/./b",
        "a/..",
        "../a",
        "a\\b",
        "a\x00b",
        ".mlopsctl-lock",
        "x/.mlopsctl-tmp-1",
    ],
)
def test_invalid_keys(key: str) -> None:
    with pytest.raises(UsageError) as info:
        check_key(key)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("prefix", ["", "runs/", "runs/ab", "a"])
def test_valid_prefixes(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/runs", "../x/", "a/../b"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(UsageError):
        check_prefix(prefix)


def test_parse_digest() -> None:
    assert parse_digest(f"sha256:{HEX}") == HEX
    assert parse_digest(f"sha256:{HEX.upper()}") == HEX
    assert format_digest(HEX) == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "digest", [HEX, f"sha256:{HEX[:-1]}", f"md5:{HEX}", f"sha256:{HEX[:-1]}g", "", "sha256:"]
)
def test_bad_digest_is_usage_error(digest: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_digest(digest)
    assert info.value.exit_code == ExitCode.USAGE
    assert "sha256:" in str(info.value)


def test_blob_key_layout() -> None:
    assert blob_key(f"sha256:{HEX}") == f"blobs/sha256/{HEX[:2]}/{HEX}"
    with pytest.raises(UsageError):
        blob_key("sha256:nothex")
