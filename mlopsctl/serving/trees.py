"""XGBoost's trees evaluated with numpy, for the few rows a request sends.

On one row, XGBoost's own prediction (even through the C API with a reused proxy, see
`predictor._direct_booster`) spends most of its time outside the trees: it parses a JSON
configuration, builds views of every tree and walks them for their depth on every call. The
trees themselves are a few hundred comparisons. Here every tree's nodes are packed once into
flat arrays (children, split feature, threshold, default direction; a leaf points to itself),
and a row decides every split of every tree at once, then walks all trees together, one
level per step: a dozen numpy calls over arrays of a few thousand entries.

The arithmetic is XGBoost's: features are compared as float32 (``value < threshold``, a
missing value takes the default direction), the leaf values are added one tree after another
in float32 onto the base margin, and the logistic link is ``1 / (1 + exp(-margin))`` in float32
(the exponential rounded from float64, its argument capped at 88.7 as XGBoost caps it).
`compile_trees` checks the result against the booster's own on probe rows before it is used,
bit for bit, and gives None for anything it does not cover (categorical splits, vector leaves,
several outputs, a ``missing`` other than NaN, a link other than identity or logistic) or where
it is not faster (many large trees): the caller then keeps XGBoost's path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

# Rows up to which numpy is faster than XGBoost's call, one row after another (measured on the
# quickstart's 200 trees of depth 4: 16 µs a row against 72 µs for XGBoost's call; XGBoost's
# C++ walk wins from a few rows on).
MAX_ROWS = 3
# Nodes of all trees together beyond which numpy is not tried (its pass over every node per row
# would cost more than XGBoost's walk); below it, `compile_trees` times both on a row.
MAX_NODES = 1 << 15
TIMED_CALLS = 15
# XGBoost's logistic link computes 1 / (1 + expf(min(-margin, 88.7f))).
_EXP_CAP = np.float32(88.7)
_LOGISTIC = ("binary:logistic", "reg:logistic")
_IDENTITY = ("reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror", "binary:logitraw")


class PackedTrees:
    """All trees of a booster in flat arrays, and the base margin."""

    def __init__(self, trees: list[dict[str, Any]], base_margin: np.float32) -> None:
        left, right, feature, threshold, default, roots = [], [], [], [], [], []
        offset = 0
        depth = 0
        for tree in trees:
            lc = np.asarray(tree["left_children"], dtype="int64")
            rc = np.asarray(tree["right_children"], dtype="int64")
            own = np.arange(len(lc), dtype="int64")
            leaf = lc == -1
            left.append(np.where(leaf, own, lc) + offset)
            right.append(np.where(leaf, own, rc) + offset)
            feature.append(np.asarray(tree["split_indices"], dtype="int64"))
            # A leaf's value is kept in its split condition.
            threshold.append(np.asarray(tree["split_conditions"], dtype="float32"))
            default.append(np.asarray(tree["default_left"], dtype=bool))
            roots.append(offset)
            offset += len(lc)
            depth = max(depth, _depth(lc, rc))
        self.left = np.concatenate(left)
        self.right = np.concatenate(right)
        self.feature = np.concatenate(feature)
        self.threshold = np.concatenate(threshold)
        self.default = np.concatenate(default)
        self.roots = np.asarray(roots, dtype="int64")
        self.depth = depth
        self.base_margin = base_margin

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """The raw margin of each row of a float64 matrix (float32, as XGBoost gives it)."""
        values = np.asarray(matrix, dtype="float32")
        return np.concatenate([self._row(row) for row in values])

    def _row(self, values: np.ndarray) -> np.ndarray:
        # Every split of every tree is decided at once (``ahead``: the child each node
        # leads to, a leaf to itself), then all trees step down together, a level per take.
        take = np.take
        x = take(values, self.feature)
        go_left = x < self.threshold
        if np.isnan(values).any():
            go_left = np.where(x != x, self.default, go_left)
        ahead = np.where(go_left, self.left, self.right)
        node = self.roots
        for _ in range(self.depth):
            node = take(ahead, node)
        # Tree after tree onto the base margin, in float32: XGBoost's order and rounding.
        total = np.empty(len(node) + 1, dtype="float32")
        total[0] = self.base_margin
        total[1:] = take(self.threshold, node)
        out: np.ndarray = np.add.accumulate(total)[-1:]
        return out


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    depth = 0
    level = [0]
    while True:
        children = [c for n in level for c in (left[n], right[n]) if c != -1]
        if not children:
            return depth
        depth += 1
        level = children


def compile_trees(
    booster: Any,
    objective: str,
    iteration_range: tuple[int, int],
    missing: float,
    reference: Callable[[np.ndarray], np.ndarray],
    width: int,
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function of a float64 matrix giving what ``reference`` (the booster's own output,
    ``predict_type="value"``) gives, bit for bit, or None when this model is not covered."""
    if objective not in _LOGISTIC and objective not in _IDENTITY:
        return None
    if not (isinstance(missing, float) and np.isnan(missing)):
        return None
    try:
        packed = _pack(booster, objective, iteration_range)
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    if packed is None:
        return None
    logistic = objective in _LOGISTIC

    def evaluate(matrix: np.ndarray) -> np.ndarray:
        margin = packed.margin(matrix)
        if not logistic:
            return margin
        # XGBoost's Sigmoid caps -margin at 88.7 (so exp stays within float32).
        negative = np.minimum(-margin, _EXP_CAP).astype("float64")
        exp = np.exp(negative).astype("float32")
        out: np.ndarray = np.float32(1.0) / (np.float32(1.0) + exp)
        return out

    if not _agrees(evaluate, reference, width, packed):
        return None
    if not _faster(evaluate, reference, width):
        return None
    return evaluate


def _faster(
    evaluate: Callable[[np.ndarray], np.ndarray],
    reference: Callable[[np.ndarray], np.ndarray],
    width: int,
) -> bool:
    """Whether ``evaluate`` answers one row faster than ``reference`` (best of a few calls
    each): a row costs numpy a pass over every node, XGBoost a walk down each tree, so large
    deep models are better left to XGBoost."""
    import time

    row = np.zeros((1, width))

    def best(function: Callable[[np.ndarray], np.ndarray]) -> float:
        times = []
        for _ in range(TIMED_CALLS):
            start = time.perf_counter()
            function(row)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(evaluate) < best(reference)


def _pack(booster: Any, objective: str, iteration_range: tuple[int, int]) -> PackedTrees | None:
    text = bytes(booster.save_raw("json"))
    if len(text) > MAX_NODES * 512:  # far more nodes than MAX_NODES: not worth parsing
        return None
    learner = json.loads(text)["learner"]
    params = learner["learner_model_param"]
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) != 1:
        return None
    model = learner["gradient_booster"]
    if model.get("name") != "gbtree":
        return None
    model = model["model"]
    trees = model["trees"]
    per_round = int(model["gbtree_model_param"].get("num_parallel_tree", "1"))
    begin, end = iteration_range
    if end:
        trees = trees[begin * per_round : end * per_round]
    elif begin:
        trees = trees[begin * per_round :]
    if not trees or sum(len(tree["left_children"]) for tree in trees) > MAX_NODES:
        return None
    for tree in trees:
        if any(tree.get("split_type") or []) or int(tree["tree_param"]["size_leaf_vector"]) > 1:
            return None  # categorical splits or vector leaves
    base_text = str(params["base_score"]).strip("[]")
    if "," in base_text:
        return None
    base_score = np.float32(float(base_text))
    if objective in _LOGISTIC:
        # XGBoost's ProbToMargin for the logistic link, in float32.
        one = np.float32(1.0)
        base = np.float32(-np.log(np.float32(one / base_score - one)))
    else:
        base = base_score
    return PackedTrees(trees, base)


def _agrees(
    evaluate: Callable[[np.ndarray], np.ndarray],
    reference: Callable[[np.ndarray], np.ndarray],
    width: int,
    packed: PackedTrees,
) -> bool:
    """Whether ``evaluate`` gives exactly the booster's output on probe rows: zeros, all
    missing, values on, just below and just above the trees' own thresholds (so both ways of
    most splits are taken, and ties are compared as XGBoost compares them), and the same with
    scattered missing values."""
    rng = np.random.default_rng(12345)
    rows = 256
    probe = rng.standard_normal((rows, width)) * 10.0 ** rng.integers(-3, 4, (rows, width))
    inner = packed.left != np.arange(len(packed.left))
    for f in range(width):
        cuts = packed.threshold[inner & (packed.feature == f)].astype("float64")
        if len(cuts):
            picked = rng.choice(cuts, rows)
            # On the threshold, or one float32 step below or above it.
            step = rng.integers(-1, 2, rows)
            toward = np.where(step < 0, -np.inf, np.inf).astype("float32")
            nearby = np.nextafter(picked.astype("float32"), toward).astype("float64")
            probe[:, f] = np.where(step == 0, picked, nearby)
    holes = probe.copy()
    holes[rng.random(holes.shape) < 0.2] = np.nan
    probes = [np.zeros((1, width)), np.full((2, width), np.nan), probe, holes]
    probes += [holes[i : i + 1] for i in range(8)]
    try:
        for probe in probes:
            expected = np.asarray(reference(probe)).reshape(-1)
            got = evaluate(probe)
            if expected.dtype != got.dtype or not np.array_equal(expected, got, equal_nan=True):
                return False
    except (ValueError, TypeError, IndexError, FloatingPointError):
        return False
    return True
