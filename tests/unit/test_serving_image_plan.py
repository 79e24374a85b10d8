"""Serving images without an engine: the pinned runtime per flavor, the build context and its
content digest, the provenance labels, slim.py's pruning and de-duplication, deployment names
and where a Docker host's containers answer."""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

import pytest

from mlopsctl.config import project_from_data
from mlopsctl.containers import deploy, slim
from mlopsctl.containers.engine import Engine
from mlopsctl.errors import UsageError


def _names(pins: list[str]) -> dict[str, str]:
    return {p.split("==")[0].lower(): p.split("==")[1] for p in pins}


def test_the_xgboost_runtime_is_pinned_cpu_only_and_leaves_out_what_serving_never_loads() -> None:
    pins = _names(deploy.runtime_requirements("xgboost"))
    assert pins["xgboost-cpu"] == md.version("xgboost")
    assert "xgboost" not in pins
    for needed in ("numpy", "pandas", "scikit-learn", "skops", "scipy", "pyarrow", "boto3"):
        assert pins[needed] == md.version(needed)
    assert not [n for n in pins if n.startswith("nvidia-")]
    for unused in ("docker", "matplotlib", "rich", "pygments", "pytest", "mypy"):
        assert unused not in pins


def test_the_sklearn_runtime_has_no_xgboost_and_other_flavors_are_refused() -> None:
    pins = _names(deploy.runtime_requirements("sklearn"))
    assert "scikit-learn" in pins and "skops" in pins
    assert not [n for n in pins if n.startswith("xgboost")]
    with pytest.raises(UsageError, match="flavor 'pickle'"):
        deploy.runtime_requirements("pickle")


def _record(digest: str = "sha256:" + "ab" * 32) -> dict:
    return {
        "name": "churn",
        "version": 3,
        "artifact": {"digest": digest, "flavor": "sklearn"},
        "run": {"id": "20260101-000000-000-abcdef"},
        "git": {"commit": "c0ffee" * 6 + "abcd", "remote": "git@example.com:team/churn.git"},
        "pipeline": {"name": "churn-train"},
        "image": {"digest": "sha256:" + "cd" * 32},
        "who": {"name": "ana@example.com", "source": "git"},
    }


def _model_dir(tmp_path: Path, content: bytes = b"model") -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"flavor": "sklearn"}))
    (folder / "model.skops").write_bytes(content)
    return folder


def _project(tmp_path: Path):
    data = {
        "name": "team",
        "registry": {"url": "127.0.0.1:5000"},
        "image": {"base": "mlopsctl-base:deps"},
    }
    return project_from_data(data, tmp_path, None)


def test_the_context_holds_runtime_source_and_model_and_its_digest_follows_the_model(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path)
    plan = deploy.plan_serving(project, _record(), _model_dir(tmp_path), port=9000)
    names = {f.arcname for f in plan.files}
    assert {"Dockerfile", "_serving/requirements.txt", "_serving/slim.py"} <= names
    assert {"model/model.json", "model/model.skops"} <= names
    assert "_mlopsctl/src/mlopsctl/containers/deploy.py" in names
    assert plan.repository == "127.0.0.1:5000/team/serving-churn"
    dockerfile = next(f for f in plan.files if f.arcname == "Dockerfile").read().decode()
    assert "FROM mlopsctl-base:deps AS build" in dockerfile
    assert "\nFROM scratch\n" in dockerfile
    assert "{{" not in dockerfile
    assert json.dumps(deploy.serve_command("churn", 3, 9000)) in dockerfile
    assert "127.0.0.1:9000/v2/health/ready" in dockerfile
    requirements = next(f for f in plan.files if f.arcname == "_serving/requirements.txt")
    assert b"scikit-learn==" in requirements.read()

    before = plan.content_digest("base")
    same = deploy.plan_serving(project, _record(), _model_dir(tmp_path), port=9000)
    assert same.content_digest("base") == before
    assert plan.content_digest("other-base") != before
    other_port = deploy.plan_serving(project, _record(), _model_dir(tmp_path), port=9001)
    assert other_port.content_digest("base") != before
    changed = deploy.plan_serving(project, _record(), _model_dir(tmp_path, b"other"), port=9000)
    assert changed.content_digest("base") != before


def test_labels_carry_the_model_provenance() -> None:
    labels = deploy.model_labels(_record())
    assert labels == {
        "dev.mlopsctl.model.name": "churn",
        "dev.mlopsctl.model.version": "3",
        "dev.mlopsctl.model.digest": "sha256:" + "ab" * 32,
        "dev.mlopsctl.model.flavor": "sklearn",
        "dev.mlopsctl.model.run": "20260101-000000-000-abcdef",
        "dev.mlopsctl.model.git-commit": "c0ffee" * 6 + "abcd",
        "dev.mlopsctl.model.pipeline": "churn-train",
        "dev.mlopsctl.model.training-image": "sha256:" + "cd" * 32,
        "dev.mlopsctl.model.registered-by": "ana@example.com",
    }


@pytest.mark.parametrize(
    ("path", "skipped"),
    [
        ("pandas/tests/frame/test_api.py", True),
        ("numpy/testing/__init__.py", False),
        ("numpy/testing/_private/utils.py", False),
        ("numpy/_core/include/numpy/ndarrayobject.h", True),
        ("sklearn/tree/_tree.pxd", True),
        ("pyarrow/_flight.cpython-311-x86_64-linux-gnu.so", True),
        ("pyarrow/libarrow_s3.so.2600", True),
        ("pyarrow/libparquet.so.2600", False),
        ("pyarrow/lib.cpython-311-x86_64-linux-gnu.so", False),
        ("botocore/data/ec2/2016-11-15/service-2.json.gz", True),
        ("botocore/data/s3/2006-03-01/service-2.json.gz", False),
        ("botocore/data/endpoints.json", False),
        ("xgboost/__pycache__/core.cpython-311.pyc", True),
        ("xgboost/core.py", False),
    ],
)
def test_slim_leaves_out_what_a_server_never_loads(path: str, skipped: bool) -> None:
    assert slim._skip(path) is skipped


def test_slim_links_duplicate_libraries_to_one_copy(tmp_path: Path) -> None:
    lib = tmp_path / "pkg"
    lib.mkdir()
    payload = b"\x7fELF" + b"x" * (2 << 20)
    for name in ("libfoo.so", "libfoo.so.1", "libfoo.so.1.0"):
        (lib / name).write_bytes(payload)
    (lib / "libbar.so").write_bytes(b"\x7fELF" + b"y" * (2 << 20))
    saved = slim.dedupe(tmp_path)
    assert saved == 2 * len(payload)
    kept = [p for p in lib.iterdir() if not p.is_symlink()]
    assert sorted(p.name for p in kept) == ["libbar.so", "libfoo.so"]
    assert (lib / "libfoo.so.1.0").read_bytes() == payload


def test_slim_runs_without_mlopsctl_on_the_path(tmp_path: Path) -> None:
    """The build stage runs slim.py by path with a bare interpreter: stdlib only."""
    source = Path(slim.__file__).read_text()
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    }
    assert imported <= set(sys.stdlib_module_names)


def test_deployment_names_and_where_containers_answer(tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert deploy.deployment_name(project, "churn", None) == "team-churn"
    assert deploy.deployment_name(project, "churn", "blue.1") == "blue.1"
    with pytest.raises(UsageError, match="invalid deployment name"):
        deploy.deployment_name(project, "churn", "no spaces")
    assert deploy.Target.of(Engine("gpu", "tcp://10.0.0.7:2375")).address == "10.0.0.7"
    assert deploy.Target.of(Engine("gpu", "ssh://ops@box.example")).address == "box.example"
    assert deploy.Target.of(Engine("here", "unix:///var/run/docker.sock")).address == "127.0.0.1"


def test_store_access_reaches_the_container_by_url_mount_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPSCTL_STORE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CA_BUNDLE", "/on/this/machine.pem")  # a host path: not passed
    here, far = Engine("default", "unix:///run/d.sock"), Engine("far", "tcp://10.0.0.7:2375")
    s3 = project_from_data(
        {"name": "p", "store": {"url": "s3://b/p", "s3": {"endpoint_url": "http://s3:9000"}}},
        tmp_path,
        None,
    )
    env, binds = deploy._store_access(s3, far, {"EXTRA": "1"})
    assert env == {
        "MLOPSCTL_STORE": "s3://b/p",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ENDPOINT_URL": "http://s3:9000",
        "EXTRA": "1",
    }
    assert binds == []
    local = project_from_data({"name": "p"}, tmp_path, None)
    env, binds = deploy._store_access(local, here, None)
    folder = (tmp_path / ".mlops").resolve()
    assert env == {"MLOPSCTL_STORE": str(folder)}
    assert binds == [f"{folder}:{folder}:rw"]
    assert deploy._store_access(local, far, None) == ({}, [])
