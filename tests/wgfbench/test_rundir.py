"""The typed run directory: every committed run loads, unknown fields survive a round trip, and a
field of the wrong type is an error naming the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wgfbench import store
from wgfbench.rundir import Manifest, RunDir, Session
from wgfbench.store import StoreError

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(p.parent for p in (ROOT / "leaderboards").glob("**/cases.parquet"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_run_reads_as_a_typed_run_directory(path):
    run = RunDir(path)
    manifest = run.manifest
    assert manifest.tier in ("smoke", "quick", "large") and manifest.run_id
    assert manifest.scoring_version >= 1 and manifest.machine_line() != "not recorded"
    cases = run.cases()
    assert len(cases) and set(cases["status"]) <= {"ok", "failed", "skipped"}
    assert {"solver", "problem", "seed", "metric", "value"} <= set(run.results().columns)
    ok = cases[cases["status"] == "ok"].iloc[0]
    if run.final_snapshot_path(ok["case_key"]).is_file():
        assert run.final_snapshot(ok["case_key"])["x"].ndim == 2


def test_unknown_fields_survive_a_round_trip(tmp_path):
    source = ROOT / "leaderboards" / "resolution" / "smoke-run"
    shutil.copy(source / "manifest.json", tmp_path / "manifest.json")
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["written_by_a_newer_wgfbench"] = {"x": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    run = RunDir(tmp_path)
    manifest = run.manifest
    manifest.sessions = [*manifest.sessions, Session(command="wgfbench run …", ran=3)]
    run.write_manifest(manifest)
    again = json.loads((tmp_path / "manifest.json").read_text())
    assert again["written_by_a_newer_wgfbench"] == {"x": 1}
    assert again["sessions"][-1]["ran"] == 3
    assert again["scoring"]["salt"] == raw["scoring"]["salt"]
    assert RunDir(tmp_path).manifest == run.reload()


def test_a_field_of_the_wrong_type_names_the_file_and_the_field(tmp_path):
    store.write_manifest(tmp_path, {"schema_version": 3, "run_id": "r", "base_seed": "zero"})
    with pytest.raises(StoreError, match=r"manifest.json is not a valid wgfbench manifest \(base_seed"):
        _ = RunDir(tmp_path).manifest


def test_a_directory_that_is_not_a_run_says_so(tmp_path):
    run = RunDir(tmp_path)
    assert not run.has_manifest
    with pytest.raises(StoreError, match="not a wgfbench run directory"):
        _ = run.manifest


def test_manifest_status_and_versions():
    manifest = Manifest(
        schema_version=3,
        run_id="r",
        versions={"torch": "2.13.0", "plugins": {"fv-jko": "0.1.0"}},
        machine={"cpu_model": "EPYC", "cpu_affinity": 2},
        interrupted=True,
    )
    assert manifest.status == "interrupted"
    assert manifest.flat_versions() == {"torch": "2.13.0", "plugins/fv-jko": "0.1.0"}
    assert manifest.machine_line() == "device cpu, CPU EPYC, cores available 2"
