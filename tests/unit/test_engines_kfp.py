"""The KFP export's conversions that need no SDK: spec memory sizes as KFP reads them, and
input/output names as KFP parameter names."""

from __future__ import annotations

import pytest

from mlopsctl.engines.kfp import io_name, kfp_memory
from mlopsctl.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "kfp"),
    [
        ("512m", "512Mi"),
        ("4g", "4Gi"),
        ("2Gi", "2Gi"),
        ("1.5g", "1536Mi"),
        ("2048M", "2Gi"),
        ("64k", "64Ki"),
        ("100", "100"),
        ("1t", "1024Gi"),
    ],
)
def test_memory_sizes_in_binary_units(spec: str, kfp: str) -> None:
    assert kfp_memory(spec) == kfp


def test_a_memory_size_that_is_not_one_is_refused() -> None:
    with pytest.raises(UsageError, match="not a size"):
        kfp_memory("lots")


def test_names_become_identifiers() -> None:
    assert io_name("in", "train") == "in_train"
    assert io_name("out", "feature-table") == "out_feature_table"
