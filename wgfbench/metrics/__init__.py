"""Scoring: distances (pure functions), the metric catalogue, the shared cache and the scorer.

``from wgfbench.metrics import ...`` keeps working for every public name of the package.
"""

from wgfbench.metrics.cache import FloorCache, ScoreCache
from wgfbench.metrics.catalogue import (
    FLOOR_DRAWS,
    MASS_TOLERANCE,
    METRICS,
    SUSPECT_FLOOR_RATIO,
    MetricInfo,
    MetricRow,
)
from wgfbench.metrics.distances import (
    DEFAULT_NUM_ITER_MAX,
    MAX_DENSE_BYTES,
    N_PROJECTIONS,
    OptimalTransportError,
    bures_w2,
    grid_l1_error,
    quantile_w2_sq,
    radial_w2,
    reference_on_grid,
    resample,
    sliced_projections,
    sliced_w2,
    w2,
)
from wgfbench.metrics.registry import BUILTIN_METRICS, Metric, MetricRegistry, SnapshotContext
from wgfbench.metrics.scorer import Scorer

__all__ = [
    "BUILTIN_METRICS",
    "DEFAULT_NUM_ITER_MAX",
    "FLOOR_DRAWS",
    "MASS_TOLERANCE",
    "MAX_DENSE_BYTES",
    "METRICS",
    "N_PROJECTIONS",
    "SUSPECT_FLOOR_RATIO",
    "FloorCache",
    "Metric",
    "MetricInfo",
    "MetricRegistry",
    "MetricRow",
    "OptimalTransportError",
    "ScoreCache",
    "Scorer",
    "SnapshotContext",
    "bures_w2",
    "grid_l1_error",
    "quantile_w2_sq",
    "radial_w2",
    "reference_on_grid",
    "resample",
    "sliced_projections",
    "sliced_w2",
    "w2",
]
