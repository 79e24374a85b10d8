"""The object store: one interface (store/base.py), backends chosen by URL scheme
(store/backends.py): a local folder (store/local.py) or S3 (store/s3.py); content-addressed
blobs on top (store/blobs.py)."""

from __future__ import annotations

from mlopsctl.store.backends import BACKENDS, S3_OPTIONS, local_root, open_store
from mlopsctl.store.base import ObjectInfo, ObjectStore

__all__ = ["BACKENDS", "S3_OPTIONS", "ObjectInfo", "ObjectStore", "local_root", "open_store"]
