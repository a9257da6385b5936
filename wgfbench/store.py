"""The run directory: how a campaign is written to disk and read back (no pickle anywhere).

Layout of a run directory::

    run_dir/
        manifest.json                     plan, schema version, versions, machine (see runner)
        parts/<case_key>.results.parquet  the case's rows in the public long schema, written first
        parts/<case_key>.case.json        the case record: its existence commits the case
        artifacts/<case_key>/final.npz    the final snapshot resampled to the tier's n_eval
        cases.parquet                     one row per case      } consolidated from parts at the end
        results.parquet                   public long format    } of a run, readable before that

Every file is written atomically (a temporary file in the same directory, flushed, fsynced and
moved into place with :func:`os.replace`), and a case's results part is written before its
``case.json``, so a killed run loses at most the case in flight and never leaves a half-written
file behind. Readers prefer the consolidated files and fall back to the parts when the run is still
in progress (or was killed before consolidating): a part newer than ``cases.parquet`` means the
consolidated files are stale.

The results table is the **public** long schema ``run_id, solver, problem, seed, t, step, metric,
value`` (exactly these columns in this order; ``t`` float64, NaN for per-case rows such as costs;
``step`` int64, −1 for rows not tied to a logged step; ``value`` float64).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wgfbench.errors import WgfbenchError

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
CASES = "cases.parquet"
RESULTS = "results.parquet"
PARTS = "parts"
ARTIFACTS = "artifacts"
FINAL_SNAPSHOT = "final.npz"
CASE_SUFFIX = ".case.json"
RESULTS_SUFFIX = ".results.parquet"

RESULTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("solver", pa.string()),
        ("problem", pa.string()),
        ("seed", pa.int64()),
        ("t", pa.float64()),
        ("step", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)
"""The public long results schema (column order is part of the contract)."""

RESULTS_COLUMNS: tuple[str, ...] = tuple(RESULTS_SCHEMA.names)

CASES_SCHEMA = pa.schema(
    [
        ("case_key", pa.string()),
        ("solver", pa.string()),
        ("problem", pa.string()),
        ("problem_version", pa.int64()),
        ("seed", pa.int64()),
        ("solver_seed", pa.int64()),
        ("tier", pa.string()),
        ("device", pa.string()),
        ("status", pa.string()),
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("config", pa.string()),
        ("config_hash", pa.string()),
        ("plugin", pa.string()),
        ("role", pa.string()),
        ("score_salt_sha256", pa.string()),
        ("prepare_seconds", pa.float64()),
        ("solve_seconds", pa.float64()),
        ("score_seconds", pa.float64()),
        ("n_steps", pa.int64()),
        ("peak_memory_mb", pa.float64()),
        ("started", pa.string()),
        ("finished", pa.string()),
    ]
)
"""One row per case; ``seed`` is the repetition index, ``solver_seed`` the seed the solver got,
``role`` the solver's leaderboard role (solver, baseline, calibration) and ``score_salt_sha256`` the
digest of the scoring salt its scores were drawn with (the salt is in the manifest)."""

CASES_COLUMNS: tuple[str, ...] = tuple(CASES_SCHEMA.names)


class StoreError(WgfbenchError):
    """A run directory that is missing, incomplete or of an unknown schema."""


# ----------------------------------------------------------------------------------------------
# Atomic writers


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``; moved onto ``path`` with ``os.replace`` on success and
    removed on failure, so ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # durable before it becomes visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite_or_none(obj: Any) -> Any:
    """Strict JSON has no NaN: non-finite floats become ``null``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (non-finite floats as ``null``) atomically."""
    text = json.dumps(_finite_or_none(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    with _atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def write_parquet_atomic(path: Path, table: pa.Table | pd.DataFrame, schema: pa.Schema | None = None) -> None:
    """Write a table (or DataFrame cast to ``schema``) as Parquet atomically."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    elif schema is not None:
        table = table.cast(schema)
    with _atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write plain numeric arrays with ``np.savez`` atomically (loadable with allow_pickle=False)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object: it would need pickle")
    with _atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`write_npz_atomic` (never unpickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ----------------------------------------------------------------------------------------------
# Frames with the exact schemas


def results_frame(rows: Mapping[str, Any] | pd.DataFrame | None = None) -> pd.DataFrame:
    """A DataFrame in the public results schema (columns in order, exact dtypes)."""
    if rows is None:
        return RESULTS_SCHEMA.empty_table().to_pandas()
    df = pd.DataFrame(rows)
    missing = [c for c in RESULTS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"results rows lack columns {missing}")
    return pa.Table.from_pandas(
        df[list(RESULTS_COLUMNS)], schema=RESULTS_SCHEMA, preserve_index=False
    ).to_pandas()


def cases_frame(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame in the cases schema from case records (extra record fields are dropped)."""
    if not records:
        return CASES_SCHEMA.empty_table().to_pandas()
    cols = {c: [r.get(c) for r in records] for c in CASES_COLUMNS}
    return pa.Table.from_pydict(cols, schema=CASES_SCHEMA).to_pandas()


# ----------------------------------------------------------------------------------------------
# Manifest and parts


def manifest_path(run_dir: Path) -> Path:
    """``run_dir/manifest.json``."""
    return Path(run_dir) / MANIFEST


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` atomically (it must carry ``schema_version``)."""
    if "schema_version" not in manifest:
        raise ValueError("a manifest needs a schema_version")
    write_json_atomic(manifest_path(run_dir), manifest)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest; raises :class:`StoreError` when ``run_dir`` is not a run directory."""
    path = manifest_path(run_dir)
    if not path.is_file():
        raise StoreError(f"{run_dir} is not a wgfbench run directory (no {MANIFEST})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{run_dir}: schema_version {version!r} is not the supported {SCHEMA_VERSION}")
    return manifest


def case_json_path(run_dir: Path, case_key: str) -> Path:
    """``run_dir/parts/<case_key>.case.json``: the case record, whose existence commits the case."""
    return Path(run_dir) / PARTS / f"{case_key}{CASE_SUFFIX}"


def results_part_path(run_dir: Path, case_key: str) -> Path:
    """``run_dir/parts/<case_key>.results.parquet``: the case's rows in the public schema."""
    return Path(run_dir) / PARTS / f"{case_key}{RESULTS_SUFFIX}"


def artifacts_dir(run_dir: Path, case_key: str) -> Path:
    """``run_dir/artifacts/<case_key>``: the case's ``ctx.artifacts`` and its final snapshot."""
    return Path(run_dir) / ARTIFACTS / case_key


def final_snapshot_path(run_dir: Path, case_key: str) -> Path:
    """``run_dir/artifacts/<case_key>/final.npz``: ``x`` (n_eval, d) float64 and ``t``."""
    return artifacts_dir(run_dir, case_key) / FINAL_SNAPSHOT


def write_case(run_dir: Path, record: Mapping[str, Any], results: pd.DataFrame) -> None:
    """Commit one case: its results part first, then its ``case.json`` (the commit marker).

    ``record`` needs at least the :data:`CASES_COLUMNS`; it may carry more (traceback, stage).
    ``results`` is in the public schema (see :func:`results_frame`).
    """
    key = record["case_key"]
    missing = [c for c in CASES_COLUMNS if c not in record]
    if missing:
        raise ValueError(f"case record {key} lacks fields {missing}")
    write_parquet_atomic(results_part_path(run_dir, key), results_frame(results), RESULTS_SCHEMA)
    write_json_atomic(case_json_path(run_dir, key), dict(record))


def committed_cases(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every committed case (those with a ``case.json``), by case key."""
    parts = Path(run_dir) / PARTS
    if not parts.is_dir():
        return {}
    out = {}
    for path in sorted(parts.glob(f"*{CASE_SUFFIX}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        out[record["case_key"]] = record
    return out


def _plan_order(run_dir: Path) -> dict[str, int]:
    try:
        cases = read_manifest(run_dir).get("plan", {}).get("cases", [])
    except StoreError:
        return {}
    return {c["key"]: i for i, c in enumerate(cases)}


def _ordered_records(run_dir: Path) -> list[dict[str, Any]]:
    records = committed_cases(run_dir)
    order = _plan_order(run_dir)
    return sorted(records.values(), key=lambda r: (order.get(r["case_key"], len(order)), r["case_key"]))


def _cases_from_parts(run_dir: Path) -> pd.DataFrame:
    return cases_frame(_ordered_records(run_dir))


def _results_from_parts(run_dir: Path) -> pd.DataFrame:
    frames = []
    for record in _ordered_records(run_dir):
        # Only an ok case contributes rows: a results part beside a failed record can be the
        # leftover of a retry killed before its case.json was replaced.
        path = results_part_path(run_dir, record["case_key"])
        if record["status"] == "ok" and path.is_file():
            frames.append(pq.read_table(path, schema=RESULTS_SCHEMA))
    if not frames:
        return results_frame()
    return pa.concat_tables(frames).to_pandas()


def _newest_part_ns(run_dir: Path) -> int | None:
    parts = Path(run_dir) / PARTS
    if not parts.is_dir():
        return None
    times = [p.stat().st_mtime_ns for p in parts.glob(f"*{CASE_SUFFIX}")]
    return max(times) if times else None


def is_consolidated(run_dir: Path) -> bool:
    """Whether ``cases.parquet`` and ``results.parquet`` exist and are no older than every part."""
    run_dir = Path(run_dir)
    files = [run_dir / CASES, run_dir / RESULTS]
    if not all(f.is_file() for f in files):
        return False
    newest = _newest_part_ns(run_dir)
    return newest is None or all(f.stat().st_mtime_ns >= newest for f in files)


def read_cases(run_dir: Path) -> pd.DataFrame:
    """One row per case (:data:`CASES_COLUMNS`), from ``cases.parquet`` or, before consolidation,
    from the committed parts."""
    run_dir = Path(run_dir)
    read_manifest(run_dir)
    if is_consolidated(run_dir):
        return pq.read_table(run_dir / CASES, schema=CASES_SCHEMA).to_pandas()
    return _cases_from_parts(run_dir)


def read_results(run_dir: Path) -> pd.DataFrame:
    """The long results table (public schema) from ``results.parquet`` or, before consolidation,
    from the committed parts."""
    run_dir = Path(run_dir)
    read_manifest(run_dir)
    if is_consolidated(run_dir):
        return pq.read_table(run_dir / RESULTS, schema=RESULTS_SCHEMA).to_pandas()
    return _results_from_parts(run_dir)


def read_case_records(run_dir: Path) -> list[dict[str, Any]]:
    """Full case records (with traceback and stage) in plan order, read from the parts."""
    return _ordered_records(Path(run_dir))


def consolidate(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather the committed parts into ``cases.parquet`` and ``results.parquet`` (atomically).

    Parts stay in place: they are what ``--resume`` reads. Returns ``(cases, results)``.
    """
    run_dir = Path(run_dir)
    read_manifest(run_dir)
    cases = _cases_from_parts(run_dir)
    results = _results_from_parts(run_dir)
    write_parquet_atomic(run_dir / RESULTS, results, RESULTS_SCHEMA)
    write_parquet_atomic(run_dir / CASES, cases, CASES_SCHEMA)
    return cases, results
