"""Whole commands against the real SeaweedFS server: a healthy S3 store passes doctor, and each
way of not reaching a store is one line on stderr with exit code 5, within a few seconds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import S3TestServer

pytestmark = pytest.mark.s3


def _project(root: Path, url: str, endpoint: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: s3-demo\n"
        f"store:\n  url: {url}\n  s3: {{endpoint_url: '{endpoint}'}}\n"
    )
    return root


def _mlopsctl(cwd: Path, *args: str) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def test_doctor_passes_on_a_healthy_s3_store(
    tmp_path: Path, s3_env: S3TestServer, s3_url: str
) -> None:
    root = _project(tmp_path / "p", s3_url, s3_env.endpoint)
    code, out, err, _ = _mlopsctl(root, "doctor", "--json")
    assert code == 0, out + err
    store = {c["name"]: c for c in json.loads(out)["checks"]}["store"]
    assert store["status"] == "ok"
    assert "conditional writes honoured" in store["detail"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("fault", ["endpoint-down", "bad-credentials", "missing-bucket"])
def test_unreachable_store_is_one_line_and_exit_5(
    tmp_path: Path,
    s3_env: S3TestServer,
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    endpoint, url = s3_env.endpoint, s3_url
    if fault == "endpoint-down":
        endpoint = f"http://127.0.0.1:{_free_port()}"
    elif fault == "bad-credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        url = "s3://no-such-bucket-mlopsctl/x"
    root = _project(tmp_path / "p", url, endpoint)
    code, out, err, elapsed = _mlopsctl(root, "runs", "list")
    assert out == ""  # nothing half-printed on stdout
    assert code == 5, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mlopsctl: error: ")
    assert "; " in lines[0]  # what went wrong; what to do
    assert elapsed < 15
    expected = {
        "endpoint-down": "127.0.0.1",
        "bad-credentials": "credentials",
        "missing-bucket": "no-such-bucket-mlopsctl",
    }[fault]
    assert expected in lines[0]


def test_records_are_read_without_botocore_and_match_it(
    s3_env: S3TestServer, make_s3_store
) -> None:
    """The small signed GET (s3fast) and botocore agree byte for byte and etag for etag; a
    missing key is NotFound either way."""
    from mlopsctl.errors import NotFound, StoreUnauthorized

    fast = make_s3_store()
    fast.put("runs/r1.json", b'{"id": "r1"}')
    reader = make_s3_store()
    body, etag = reader.get_versioned("runs/r1.json")
    assert reader._client_obj is None  # served without building a botocore client
    assert (body, etag) == (b'{"id": "r1"}', fast.stat("runs/r1.json").etag)
    with pytest.raises(NotFound):
        reader.get("runs/missing.json")
    assert reader._client_obj is None
    # after a failure of the fast path (wrong secret), botocore answers and explains
    bad = make_s3_store()
    os.environ["AWS_SECRET_ACCESS_KEY"] = "wrong"  # s3_env's monkeypatch restores it

    with pytest.raises(StoreUnauthorized):
        bad.get("runs/r1.json")
    assert bad._client_obj is not None


def test_models_show_on_s3_loads_no_botocore(
    tmp_path: Path, s3_env: S3TestServer, s3_url: str, make_s3_store
) -> None:
    from mlopsctl.registry import register_version, set_alias
    from mlopsctl.store.blobs import put_blob_bytes

    store = make_s3_store()
    digest = put_blob_bytes(store, b"model bytes")
    register_version(store, "m", {"artifact": {"digest": digest, "kind": "file", "size": 11}})
    set_alias(store, "m", "production", 1)
    root = _project(tmp_path / "p", s3_url, s3_env.endpoint)
    probe = (
        "import sys, json\n"
        "from mlopsctl.cli.main import main\n"
        "try:\n    main(['models', 'show', 'm@production', '--json'])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "sys.stderr.write(json.dumps([code, 'botocore' in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60
    )
    code, botocore_loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert code in (0, None), proc.stderr
    assert json.loads(proc.stdout)["version"] == 1
    assert botocore_loaded is False
