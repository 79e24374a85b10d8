"""The caller's S3 identity, resolved on this machine for a process that runs elsewhere (a
container, a Ray worker): profiles, SSO caches and ~/.aws stay here, only the resolved keys,
region and endpoint travel, for that run only."""

from __future__ import annotations

import os

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def caller_aws_environment(profile: str | None, region: str | None) -> dict[str, str]:
    """AWS_* variables for the caller's credentials (frozen now), region and endpoint."""
    import boto3

    session = boto3.Session(profile_name=profile) if profile else boto3.Session()
    env: dict[str, str] = {}
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        env["AWS_ACCESS_KEY_ID"] = frozen.access_key
        env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
    region = region or session.region_name
    if region:
        env["AWS_DEFAULT_REGION"] = env["AWS_REGION"] = region
    for name in ENDPOINT_VARIABLES:
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env
