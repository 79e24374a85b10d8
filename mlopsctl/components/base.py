"""The contract between the executor and a component.

A built-in component is a module in mlopsctl/components/ with these module-level names:

    NAME: str                          the name used in `component:` in a pipeline spec
    DESCRIPTION: str                   one line for `mlopsctl components list`
    INPUTS: dict[str, str]             input name -> description (all required)
    OPTIONAL_INPUTS: dict[str, str]    (optional) inputs a step may leave out
    OUTPUTS: dict[str, str]            output name -> "file" or "dir"
    PARAMS: dict                       JSON Schema of the step's `with:` block
    LIBRARIES: tuple[str, ...]         distributions whose installed versions enter the cache key
    FILE_PARAMS: tuple[str, ...]       `with:` keys naming local data files; their content digest
                                       enters the cache key (so new data means a new run)
    CODE_MODULES: tuple[str, ...]      (optional) other mlopsctl modules whose source enters the
                                       cache key, e.g. the model-artifact code a component uses
    def check(params: dict, project_root: Path) -> list[tuple[tuple, str]]
                                       (optional) cheap static checks run before anything runs;
                                       each problem is (path inside `with:`, message). Must not
                                       import heavy libraries.
    def store_digests(params: dict, project_root: Path, store: ObjectStore) -> dict[str, str]
                                       (optional) what the step reads from the store by itself
                                       (not through its inputs), by content digest; enters the
                                       cache key (ingest's feature sets: their materialisation)
    def run(ctx: StepContext) -> None  does the work; heavy imports go inside it

Module import must stay cheap (no pandas/sklearn at import time): the executor imports
components to plan a run, and a fully cached run must finish in well under a second.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore


@dataclass
class StepContext:
    """What a component sees while it runs (inside `python -m mlopsctl.exec`)."""

    step: str
    run_id: str
    params: dict[str, Any]
    inputs: dict[str, Path]  # local copies of the input artifacts (file or folder)
    outputs: dict[str, Path]  # where to write each declared output (a file, or a folder)
    workdir: Path
    project_root: Path
    store: ObjectStore | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # recorded in the run
    info: dict[str, Any] = field(default_factory=dict)  # non-numeric facts (rows, dtypes, ...)
    experiment: str | None = None
    # Set when the step runs on a cluster that takes work of its own (the Ray backend):
    # parallel(function, shared, items) runs function(shared, item) for each item there and
    # yields the results in the items' order. None: do the work in this process.
    parallel: Callable[[Callable[[Any, Any], Any], Any, list[Any]], Iterator[Any]] | None = None

    def log(self, message: str) -> None:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
