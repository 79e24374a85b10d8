"""Containers: build a pipeline's image (build.py), talk to Docker engines (engine.py) and
OCI registries (registry.py), and run pipeline steps in containers (runner.py) through the same
entry point as local runs, `python -m mlopsctl.exec TASK.json`.

Importing this package is cheap; the Docker SDK is imported by the functions that need it."""

from __future__ import annotations

IMAGE_PROJECT_DIR = "/app"  # where an image built by mlopsctl keeps the project's files
LABEL = "io.mlopsctl"  # prefix of mlopsctl's own image labels
DEFAULT_BASE = "python:3.11-slim"
DEFAULT_NETWORK = "host"
