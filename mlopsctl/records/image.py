"""Pipeline images: ``images/<project>/<pipeline>/<content tag>.json``, one per image pushed by
``mlopsctl build --push``, created once (put-if-absent). Every field is always there;
``digest`` is null when the registry did not report one."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from mlopsctl.records.codec import decode, encode
from mlopsctl.records.common import Actor, GitInfo, SpecRef

KIND = "image"
KEY_PATTERN = "images/<project>/<pipeline>/<content tag>.json"
KEY_RE = re.compile(r"images/[^/]+/[^/]+/[^/]+\.json")


class BaseImage(TypedDict):
    ref: str
    id: str


class ImageRecord(TypedDict):
    project: str
    pipeline: str
    image: str  # the repository
    content_tag: str
    tags: list[str]
    digest: str | None  # the registry's manifest digest
    image_id: str | None
    base: BaseImage
    spec: SpecRef
    git: GitInfo
    mlopsctl: str
    pushed: str
    by: Actor


def from_json(data: bytes) -> ImageRecord:
    return cast(ImageRecord, decode(data, KIND))


def to_json(record: ImageRecord) -> bytes:
    return encode(record)
