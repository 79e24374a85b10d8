"""Which containers a deploy retires: those of the deployment created before its own, listed
again once it is ready, so two deploys at once end with the later one serving, never both and
never neither. Real containers on the test bed's engine (created, not started)."""

from __future__ import annotations

import time
import uuid

import pytest

from mlopsctl.containers import deploy
from mlopsctl.testing.engines import BASE_IMAGE

pytestmark = pytest.mark.docker


def test_created_times_order_even_with_trimmed_nanoseconds() -> None:
    times = [
        "2026-11-27T02:50:01Z",
        "2026-11-27T02:50:01.1234Z",  # Go trims trailing zeros: .123400000
        "2026-11-27T02:50:01.12345678Z",
        "2026-11-27T02:50:01.9Z",
        "2026-11-27T02:50:02.000000001Z",
    ]
    assert sorted(times, key=deploy._created) == times
    assert sorted(reversed(times), key=deploy._created) == times


def test_a_deploy_retires_only_the_containers_created_before_its_own(docker_bed: str) -> None:
    from mlopsctl.testing.engines import default_client

    deployment = f"order-{uuid.uuid4().hex[:8]}"
    label = {deploy.DEPLOYMENT_LABEL: deployment}
    client = default_client()
    made: list[str] = []
    try:
        for _ in range(3):
            made.append(client.create_container(BASE_IMAGE, command=["true"], labels=label)["Id"])
            time.sleep(0.01)
        first, ours, later = made
        older = [c["Id"] for c in deploy._older_than(client, ours, deployment)]
        assert older == [first]
        assert {c["Id"] for c in deploy._older_than(client, later, deployment)} == {first, ours}
        client.remove_container(first, force=True)
        assert deploy._older_than(client, ours, deployment) == []
    finally:
        for container in made:
            try:
                client.remove_container(container, force=True)
            except Exception:  # noqa: BLE001 - already removed by the test
                pass
        client.close()
