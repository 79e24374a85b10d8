"""The caller's S3 identity handed to a container or a Ray worker: resolved here from a
profile (the credentials file never travels), with region and endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlopsctl.store.credentials import caller_aws_environment


@pytest.fixture
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = defaultsecret\n"
        "[team]\naws_access_key_id = TEAMKEY\naws_secret_access_key = teamsecret\n"
        "aws_session_token = teamtoken\n"
    )
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-1\n[profile team]\nregion = us-east-2\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    return tmp_path


def test_a_profile_is_resolved_here_to_keys_token_and_region(aws_files: Path) -> None:
    env = caller_aws_environment("team", None)
    assert env == {
        "AWS_ACCESS_KEY_ID": "TEAMKEY",
        "AWS_SECRET_ACCESS_KEY": "teamsecret",
        "AWS_SESSION_TOKEN": "teamtoken",
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_REGION": "us-east-2",
    }


def test_the_default_identity_an_explicit_region_and_the_endpoint(
    aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:8333")
    env = caller_aws_environment(None, "ap-south-1")
    assert env["AWS_ACCESS_KEY_ID"] == "DEFAULTKEY"
    assert "AWS_SESSION_TOKEN" not in env
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "ap-south-1"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:8333"
    assert "AWS_ENDPOINT_URL" not in env
