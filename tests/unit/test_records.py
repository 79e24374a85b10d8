"""Stored records as types and JSON Schemas (mlopsctl/records/): one example of every kind as
the code wrote it (tests/fixtures/records/<kind>.json, machine names scrubbed) loads, validates
and round-trips byte for byte; keys map to kinds; the schemas are valid Draft 2020-12, allow
new fields, and a bad record is refused naming the kind, the key and the field."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.records import (
    KINDS,
    SCHEMA_DIR,
    RecordInvalid,
    decode,
    kind_of_key,
    record_problems,
    record_schema,
    validate_record,
)
from mlopsctl.records.event import TYPE_FIELDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "records"
REPO = Path(__file__).resolve().parents[2]


def _fixture(kind: str) -> bytes:
    return (FIXTURES / f"{kind}.json").read_bytes()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_todays_record_loads_validates_and_round_trips(kind: str) -> None:
    module = importlib.import_module(f"mlopsctl.records.{kind}")
    assert kind == module.KIND
    data = _fixture(kind)
    record = module.from_json(data)
    validate_record(kind, record)
    assert module.to_json(record) == data  # stored as canonical JSON, unchanged


def test_every_fixture_is_a_kind_and_every_kind_has_a_schema() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(KINDS)
    schemas = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert schemas == set(KINDS) | {"common"}


def test_the_step_fixture_is_a_step_of_the_run_fixture() -> None:
    run = json.loads(_fixture("run"))
    assert json.loads(_fixture("step")) == run["steps"]["train"]
    assert set(run["order"]) == set(run["steps"])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schemas_are_draft_2020_12_and_allow_new_fields(kind: str) -> None:
    from jsonschema import Draft202012Validator

    schema = record_schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/records/{kind}.schema.json")
    assert schema.get("additionalProperties", True) is not False
    assert schema["description"] and schema["required"]
    record = json.loads(_fixture(kind))
    record["field_of_a_later_release"] = {"anything": [1, 2]}
    assert record_problems(kind, record) == []  # older readers must not break


KEYS = {
    "runs/20261126-235959-042-3fa9c1.json": "run",
    "runs/20261126-235959-042-3fa9c1-t001.json": "trial",
    "runs/live/20261126-235959-042-3fa9c1.json": "live_run",
    "experiments/quickstart/20261126-235959-042-3fa9c1.json": "experiment",
    "cache/81/815e6eb207a5c75370bc5339eaa97ed06d6c870bbebc95d7a217f3606e76b887.json": (
        "cache_entry"
    ),
    "models/breast-cancer/versions/12.json": "version",
    "models/breast-cancer/aliases/production.json": "alias_move",
    "models/breast-cancer/alias-history/production/0000000003.json": "alias_move",
    "models/breast-cancer/latest.json": "model_latest",
    "models/breast-cancer/by-digest.json": "digest_index",
    "models/breast-cancer/by-digest/815e6eb207a5c75370bc5339eaa97ed06d6c870bbebc95d7a217f3606e76b887.json": (
        "digest_entry"
    ),
    "events/2026/11/20261126T235959.042000Z-3fa9c1aa.json": "event",
    "ct/nightly/state.json": "trigger_state",
    "ct/nightly/history/20261126T235959Z-3fa9c1.json": "trigger_firing",
    "deployments/breast-cancer/canary.json": "deployment",
    "rollouts/breast-cancer/bc-release.json": "rollout",
    "images/demo/quickstart/content-89697d9dbf50c5006d0f.json": "image",
    "datasets/churn-window/2712506f30700fb82062be5c5f1e765606b5e4a3d4d8aaea235f8f2936e8659e.json": (
        "dataset"
    ),
    # not records
    "blobs/81/815e6eb207a5c75370bc5339eaa97ed06d6c870bbebc95d7a217f3606e76b887": None,
    "logs/predictions/m/date=2026-11-26/235959-1-000001.parquet": None,
    "runs/live/sub/folder.json": None,
    "models/breast-cancer/by-digest/not-a-digest.json": None,
    "runs/20261126-235959-042-3fa9c1.json.tmp": None,
    "models/breast-cancer/versions/latest.json": None,
    "events/2026/11/x.parquet": None,
    "datasets/churn-window/not-a-digest.json": None,
}


@pytest.mark.parametrize("key", sorted(KEYS))
def test_kind_of_key(key: str) -> None:
    assert kind_of_key(key) == KEYS[key]


def test_every_kind_stored_under_a_key_is_mapped() -> None:
    stored = {k for k, v in KINDS.items() if v.key_re is not None}
    assert stored == {k for k in KEYS.values() if k} and KINDS["step"].key_pattern is None


def test_event_type_fields_match_the_schema() -> None:
    clauses = {
        c["if"]["properties"]["type"]["const"]: c["then"]["required"]
        for c in record_schema("event")["allOf"]
    }
    assert clauses == {t: list(f) for t, f in TYPE_FIELDS.items()}
    event = json.loads(_fixture("event"))
    assert event["type"] == "register"
    del event["artifact"]
    assert record_problems("event", event) == ["'artifact' is a required property"]
    event["type"] = "something.new"  # types the schema does not know are allowed
    assert record_problems("event", event) == []


def test_a_bad_record_is_refused_naming_kind_key_and_field() -> None:
    run = json.loads(_fixture("run"))
    run["steps"]["train"]["status"] = "done"
    del run["ended"]
    with pytest.raises(RecordInvalid) as caught:
        validate_record("run", run, where="runs/x.json")
    text = caught.value.one_line()
    assert text.startswith("run record runs/x.json: 'ended' is a required property")
    assert "(and 1 more)" in text and "run.schema.json" in text
    assert caught.value.kind == "run" and caught.value.where == "runs/x.json"
    assert record_problems("run", run)[1].startswith("steps.train.status: 'done' is not one of")


@pytest.mark.parametrize(
    ("kind", "change", "problem"),
    [
        ("version", {"version": 0}, "version: 0 is less than the minimum of 1"),
        ("alias_move", {"time": "2026-01-05 03:00"}, "time: '2026-01-05 03:00' does not match"),
        ("cache_entry", {"outputs": {"m": {"digest": "abc"}}}, "outputs.m: 'kind' is a required"),
        ("trigger_state", {"firings": "1"}, "firings: '1' is not of type 'integer'"),
        ("deployment", {"arms": []}, "arms: [] should be non-empty"),
        ("rollout", {"status": "paused"}, "status: 'paused' is not one of"),
        ("digest_entry", {"version": None}, "version: None is not of type 'integer'"),
        ("image", {"by": "someone"}, "by: 'someone' is not of type 'object'"),
    ],
)
def test_schema_problems_name_the_field(kind: str, change: dict[str, Any], problem: str) -> None:
    record = {**json.loads(_fixture(kind)), **change}
    problems = record_problems(kind, record)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"not json", "not JSON"), (b'["version"]', "a JSON list where an object was expected")],
)
def test_bytes_that_are_no_record(data: bytes, message: str) -> None:
    with pytest.raises(RecordInvalid, match=message):
        decode(data, "model_latest")


def test_unknown_kind_is_a_usage_error() -> None:
    from mlopsctl.errors import UsageError

    with pytest.raises(UsageError, match="unknown record kind 'runs'"):
        validate_record("runs", {})


def test_schemas_ship_inside_the_package() -> None:
    assert SCHEMA_DIR.is_relative_to(REPO / "mlopsctl")  # the wheel packages all of mlopsctl/


def test_import_is_light_and_jsonschema_waits_for_validation() -> None:
    probe = (
        "import json, sys, mlopsctl.records;"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    loaded = set(json.loads(out))
    assert not loaded & {"jsonschema", "referencing", "pandas", "numpy", "boto3", "typer"}


def test_an_artifact_index_entry_is_a_claim_or_names_its_version() -> None:
    done = json.loads(_fixture("digest_entry"))
    claim = {k: v for k, v in done.items() if k != "version"}
    assert (
        record_problems("digest_entry", {**claim, "after": 0, "claimed": "2026-01-05T03:00:00Z"})
        == []
    )
    assert record_problems("digest_entry", claim) != []  # neither a claim nor a version
    assert record_problems("digest_entry", {**done, "registration_id": None}) == []  # pre-index
