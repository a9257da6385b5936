"""Must hold: killing a run mid-way (SIGKILL, nothing flushed) and rerunning with ``--resume``
ends with every case exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd

ARGS = [
    "--solver",
    "reference",
    "--solver",
    "langevin",
    "--problem",
    "fokker-planck/ou-1d",
    "--problem",
    "porous-medium/barenblatt-1d-m2",
    "--seeds",
    "4",
    "--tier",
    "smoke",
    "--no-progress",
]


def _run(out, *extra):
    return [sys.executable, "-m", "wgfbench", "run", *ARGS, "--out", str(out), *extra]


def test_kill_then_resume_runs_every_case_exactly_once(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_run(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    parts = out / "parts"
    while time.monotonic() < deadline and len(list(parts.glob("*.case.json"))) < 3:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.case.json")}
    assert 3 <= len(done_before) < 12
    assert not (out / "cases.parquet").exists()

    resumed = subprocess.run(_run(out, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    cases = pd.read_parquet(out / "cases.parquet")
    # reference × 2 problems × 4 seeds + langevin × ou-1d × 4 seeds (langevin skips the porous medium)
    assert len(cases) == 12 and cases.case_key.is_unique
    assert (cases.status == "ok").all()
    results = pd.read_parquet(out / "results.parquet")
    per_case = results.groupby(["solver", "problem", "seed"]).size()
    assert len(per_case) == 12
    rows = results[results.metric == "w2"].groupby(["solver", "problem", "seed", "t"]).size()
    assert (rows == 1).all()
    # The cases finished before the kill were kept, not rerun.
    assert all((parts / name).stat().st_mtime_ns == mtime for name, mtime in done_before.items())
