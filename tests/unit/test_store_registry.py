"""open_store: scheme registry, URL parsing, options; no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlopsctl.errors import ConfigError, ExitCode
from mlopsctl.store import BACKENDS, ObjectInfo, ObjectStore, open_store
from mlopsctl.store.local import LocalStore
from mlopsctl.store.s3 import S3Store, parse_s3_url


def test_public_names() -> None:
    assert ObjectInfo("k", 1, "e").key == "k"
    assert issubclass(LocalStore, ObjectStore)
    assert set(BACKENDS) == {"file", "s3"}


@pytest.mark.parametrize("url", [".mlops", "./x/y", "x"])
def test_relative_paths_resolve_against_base_dir(tmp_path: Path, url: str) -> None:
    store = open_store(url, base_dir=tmp_path)
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / url).absolute()


def test_relative_path_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(".mlops")
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path.absolute() / ".mlops"


def test_absolute_path_and_file_url(tmp_path: Path) -> None:
    assert open_store(str(tmp_path / "a")).root == tmp_path / "a"  # type: ignore[attr-defined]
    assert open_store(f"file://{tmp_path}/b").root == tmp_path / "b"  # type: ignore[attr-defined]
    store = open_store("file://rel/dir", base_dir=tmp_path)
    assert store.root == tmp_path / "rel" / "dir"  # type: ignore[attr-defined]
    assert store.url.startswith("file://")


def test_s3_url() -> None:
    store = open_store("s3://my-bucket/team/project", s3_options={"region": "eu-west-1"})
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.region) == ("my-bucket", "team/project/", "eu-west-1")
    assert open_store("s3://my-bucket").prefix == ""  # type: ignore[attr-defined]
    assert open_store("s3://my-bucket/").prefix == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://ab/x", "s3://UPPER/x", "s3://bad_name/x", "s3://b..c/x", "s3://bucket/a/../b"],
)
def test_bad_bucket_names(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_s3_url(url)


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("gcs://bucket/x")
    text = str(info.value)
    assert "gcs://" in text and "s3://" in text and "file://" in text
    assert info.value.exit_code == ExitCode.ERROR


def test_empty_url() -> None:
    with pytest.raises(ConfigError):
        open_store("  ")


def test_s3_options_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("s3://bucket/x", s3_options={"endpoint": "http://x"})
    assert "endpoint_url" in str(info.value)  # the hint lists the known options
    with pytest.raises(ConfigError) as info:
        open_store("s3://bucket/x", s3_options={"aws_secret_access_key": "s"})
    assert "AWS_SECRET_ACCESS_KEY" in str(info.value)
    with pytest.raises(ConfigError):
        open_store("s3://bucket/x", s3_options={"addressing_style": "sideways"})
    store = open_store(
        "s3://bucket/x",
        s3_options={
            "endpoint_url": "http://127.0.0.1:1",
            "profile": None,
            "addressing_style": "path",
        },
    )
    assert store.endpoint_url == "http://127.0.0.1:1"  # type: ignore[attr-defined]


def test_import_does_not_load_boto3() -> None:
    code = (
        "import sys, mlopsctl.store, mlopsctl.store.blobs, mlopsctl.store.s3; "
        "mlopsctl.store.open_store('s3://bucket/x'); "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_boto3_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # The store needs only botocore (boto3 brings it); hide both, as on a machine without them.
    for name in ("boto3", "botocore", "botocore.session", "botocore.config"):
        monkeypatch.setitem(sys.modules, name, None)
    store = open_store("s3://bucket/x", s3_options={"endpoint_url": "http://127.0.0.1:1"})
    with pytest.raises(ConfigError) as info:
        store.get("k")
    assert "pip install boto3" in str(info.value)
