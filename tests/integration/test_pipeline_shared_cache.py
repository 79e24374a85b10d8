"""Two checkouts of one project, both pointed at the same SeaweedFS store: a pipeline run in
the first is a full cache hit in the second (the step cache lives in the store)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import S3TestServer, git

pytestmark = pytest.mark.s3

PIPELINE = """apiVersion: mlopsctl/v1
kind: Pipeline
name: shared
params: {rows: 2000}
steps:
  make:
    run: "python make.py ${params.rows} {outputs.data}"
    code: [make.py]
    outputs: [data]
  double:
    run: "python -c \\"import sys; open(sys.argv[2], 'w').write(''.join(str(2 * int(x)) + chr(10) for x in open(sys.argv[1])))\\" {inputs.data} {outputs.data}"
    inputs: {data: make.data}
    outputs: [data]
  total:
    python: "make:total"
    code: [make.py]
    inputs: {data: double.data}
    outputs: [sum]
"""

MAKE_PY = """import sys


def total(ctx):
    value = sum(int(x) for x in ctx.inputs["data"].read_text().split())
    ctx.outputs["sum"].write_text(str(value))
    return {"total": value}


if __name__ == "__main__":
    with open(sys.argv[2], "w") as out:
        out.writelines(f"{i}\\n" for i in range(int(sys.argv[1])))
"""


def _run(checkout: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "run", "pipelines/shared.yaml", "--json"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return dict(json.loads(proc.stdout))


def test_second_checkout_is_a_full_cache_hit(
    tmp_path: Path, s3_env: S3TestServer, s3_url: str
) -> None:
    first = tmp_path / "first"
    (first / "pipelines").mkdir(parents=True)
    (first / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: shared\n"
        f"store:\n  url: {s3_url}\n  s3: {{endpoint_url: '{s3_env.endpoint}'}}\n"
    )
    (first / "pipelines/shared.yaml").write_text(PIPELINE)
    (first / "make.py").write_text(MAKE_PY)
    git(first, "init", "-q", check=True)
    git(first, "add", "-A", check=True)
    git(first, "commit", "-qm", "pipeline", check=True)
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(first), str(second), check=True)

    one = _run(first)
    assert [s["status"] for s in one["steps"].values()] == ["executed"] * 3
    assert one["metrics"] == {"total": float(2 * sum(range(2000)))}

    two = _run(second)
    assert [s["status"] for s in two["steps"].values()] == ["cached"] * 3
    assert two["metrics"] == one["metrics"]
    assert two["git"]["commit"] == one["git"]["commit"]
    for name in one["steps"]:
        assert two["steps"][name]["outputs"] == one["steps"][name]["outputs"]
        assert two["steps"][name]["cached_from"] == one["id"]
    # both runs are recorded in the one shared store
    client = s3_env.client()
    prefix = s3_url.split("/", 3)[3]
    keys = {
        o["Key"]
        for o in client.list_objects_v2(Bucket=s3_env.bucket, Prefix=f"{prefix}/runs/")["Contents"]
    }
    assert keys == {f"{prefix}/runs/{one['id']}.json", f"{prefix}/runs/{two['id']}.json"}
