"""The run-directory store: exact schemas, atomic writes, commit order, readers that fall back to
parts before consolidation, and no pickle anywhere."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from wgfbench import store


def manifest(keys):
    return {
        "schema_version": store.SCHEMA_VERSION,
        "run_id": "r1",
        "tier": "smoke",
        "plan": {
            "cases": [
                {"solver": "s", "problem": "p/a", "repetition": i, "key": k} for i, k in enumerate(keys)
            ]
        },
    }


def record(key: str, seed: int, status: str = "ok") -> dict:
    rec = {c: None for c in store.CASES_COLUMNS}
    rec.update(
        case_key=key,
        solver="s",
        problem="p/a",
        problem_version=1,
        seed=seed,
        solver_seed=10**18 + seed,  # 63-bit seeds survive the int64 column
        tier="smoke",
        device="cpu",
        status=status,
        config='{"dt": 0.1}',
        config_hash="abc",
        plugin="toy",
        prepare_seconds=0.5,
        solve_seconds=1.5,
        score_seconds=0.25,
        n_steps=3,
        peak_memory_mb=123.0,
        started="2024-01-01T00:00:00+00:00",
        finished="2024-01-01T00:00:02+00:00",
        traceback="Traceback ...",
    )
    if status == "failed":
        rec.update(error_type="RuntimeError", error="boom")
    return rec


def rows(seed: int, n: int = 3) -> pd.DataFrame:
    return store.results_frame(
        {
            "run_id": ["r1"] * (n + 1),
            "solver": ["s"] * (n + 1),
            "problem": ["p/a"] * (n + 1),
            "seed": [seed] * (n + 1),
            "t": [0.5 * i for i in range(n)] + [math.nan],
            "step": [*range(n), -1],
            "metric": ["w2"] * n + ["solve_seconds"],
            "value": [float(seed + i) for i in range(n)] + [1.5],
        }
    )


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    store.write_manifest(path, manifest(["k0", "k1", "k2"]))
    return path


def test_results_frame_has_the_public_schema():
    frame = rows(0)
    assert list(frame.columns) == ["run_id", "solver", "problem", "seed", "t", "step", "metric", "value"]
    assert list(frame.columns) == list(store.RESULTS_COLUMNS)
    assert frame["t"].dtype == np.float64 and frame["value"].dtype == np.float64
    assert frame["step"].dtype == np.int64 and frame["seed"].dtype == np.int64
    assert math.isnan(frame["t"].iloc[-1]) and frame["step"].iloc[-1] == -1
    empty = store.results_frame()
    assert list(empty.columns) == list(store.RESULTS_COLUMNS) and len(empty) == 0
    with pytest.raises(ValueError, match="metric"):
        store.results_frame(
            {
                "run_id": ["r"],
                "solver": ["s"],
                "problem": ["p"],
                "seed": [0],
                "t": [0.0],
                "step": [0],
                "value": [1.0],
            }
        )


def test_cases_are_committed_by_their_json_and_read_before_consolidation(run_dir):
    store.write_case(run_dir, record("k1", 1, "failed"), store.results_frame())
    store.write_case(run_dir, record("k0", 0), rows(0))
    assert set(store.committed_cases(run_dir)) == {"k0", "k1"}
    assert not store.is_consolidated(run_dir)
    cases = store.read_cases(run_dir)
    assert list(cases["case_key"]) == ["k0", "k1"]  # plan order, not write order
    assert list(cases.columns) == list(store.CASES_COLUMNS)
    assert cases.loc[1, "error_type"] == "RuntimeError" and cases.loc[0, "solver_seed"] == 10**18
    results = store.read_results(run_dir)
    assert len(results) == 4 and set(results["seed"]) == {0}

    # A results part without its case.json (a kill between the two writes) is not a case.
    store.write_parquet_atomic(store.results_part_path(run_dir, "k2"), rows(2), store.RESULTS_SCHEMA)
    assert "k2" not in store.committed_cases(run_dir)

    consolidated_cases, _ = store.consolidate(run_dir)
    pd.testing.assert_frame_equal(consolidated_cases, cases)
    assert store.is_consolidated(run_dir)
    pd.testing.assert_frame_equal(store.read_cases(run_dir), cases)
    pd.testing.assert_frame_equal(store.read_results(run_dir), results)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "results.parquet"), results)
    assert pq.read_schema(run_dir / "results.parquet").names == list(store.RESULTS_COLUMNS)

    # A case committed after consolidation makes the consolidated files stale: readers use parts.
    store.write_case(run_dir, record("k2", 2), rows(2))
    later = os.stat(run_dir / "cases.parquet").st_mtime_ns + 1_000_000
    os.utime(store.case_json_path(run_dir, "k2"), ns=(later, later))
    assert not store.is_consolidated(run_dir)
    assert list(store.read_cases(run_dir)["case_key"]) == ["k0", "k1", "k2"]
    assert len(store.read_results(run_dir)) == 8


def test_a_failed_record_ignores_a_leftover_results_part(run_dir):
    # A retry killed after writing its results but before replacing the failed case.json.
    store.write_case(run_dir, record("k0", 0, "failed"), store.results_frame())
    store.write_parquet_atomic(store.results_part_path(run_dir, "k0"), rows(0), store.RESULTS_SCHEMA)
    assert len(store.read_results(run_dir)) == 0


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "x.json"
    store.write_json_atomic(path, {"a": 1, "nan": math.nan, "nested": [math.inf, 2.0]})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None, "nested": [None, 2.0]}

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        store.write_json_atomic(path, {"a": Unserialisable()})
    assert json.loads(path.read_text())["a"] == 1
    table = tmp_path / "t.parquet"
    store.write_parquet_atomic(table, rows(0), store.RESULTS_SCHEMA)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow raises its own error type for a bad cast
        store.write_parquet_atomic(table, pd.DataFrame({"seed": ["not an int"]}), store.RESULTS_SCHEMA)
    assert len(pd.read_parquet(table)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet", "x.json"]  # no temporary files left


def test_npz_without_pickle(tmp_path):
    path = tmp_path / "a" / "final.npz"
    x = np.random.default_rng(0).normal(size=(7, 2))
    store.write_npz_atomic(path, {"x": x, "t": np.asarray(1.0)})
    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["x"], x)
    assert float(store.load_npz(path)["t"]) == 1.0
    with pytest.raises(TypeError, match="pickle"):
        store.write_npz_atomic(path, {"bad": np.array([{"a": 1}], dtype=object)})


def test_every_file_is_parquet_json_or_npz(run_dir):
    store.write_case(run_dir, record("k0", 0), rows(0))
    store.write_npz_atomic(store.final_snapshot_path(run_dir, "k0"), {"x": np.zeros((3, 1))})
    store.consolidate(run_dir)
    magic = {".parquet": b"PAR1", ".npz": b"PK\x03\x04", ".json": b"{"}
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) == 6
    for path in files:
        assert path.read_bytes()[:4].startswith(magic[path.suffix]), path


def test_read_manifest_rejects_non_runs(tmp_path, run_dir):
    with pytest.raises(store.StoreError, match="not a wgfbench run directory"):
        store.read_manifest(tmp_path / "nowhere")
    with pytest.raises(store.StoreError):
        store.read_cases(tmp_path)
    bad = tmp_path / "future"
    store.write_manifest(bad, {**manifest([]), "schema_version": 99})
    with pytest.raises(store.StoreError, match="schema_version"):
        store.read_manifest(bad)
    with pytest.raises(ValueError, match="schema_version"):
        store.write_manifest(tmp_path / "x", {"run_id": "r"})
    with pytest.raises(ValueError, match="lacks fields"):
        store.write_case(run_dir, {"case_key": "k9"}, store.results_frame())
