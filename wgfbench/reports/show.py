"""``wgfbench show``: one run directory on the terminal — its manifest, one line per case (status,
error, timings, peak memory), the skipped pairs, the key metrics at the final time — and, on
request, a figure of every ok case's final snapshot beside a reference draw.

The run is read through :class:`wgfbench.rundir.RunDir`; the reference draws are seeded by
``reference_seed(base_seed, problem, seed, t, "show")``, never by the scoring salt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wgfbench.errors import WgfbenchError
from wgfbench.reports import figures as figs
from wgfbench.rundir import RunDir

KEY_METRICS: tuple[str, ...] = ("rel_error", "w2", "w2_floor", "energy_error", "energy_gap")
"""Metrics ``show`` reports at the final time when present (plus each problem's primary metric)."""

CASE_METRICS: tuple[str, ...] = ("trajectory_error", "flag_suspect", "flag_mass")
"""Per-case rows that ``wgfbench show`` puts before the final-time metrics."""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}g}"
    return str(value)


def _seconds(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = float(value)
    if value < 1e-3:
        return "<0.001"
    return f"{value:.3f}" if value < 100 else f"{value:.0f}"


def _first_line(text: Any, limit: int = 100) -> str:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def primary_metrics(problems: Sequence[str]) -> list[str]:
    """The primary metric of each problem the default host still knows."""
    import wgfbench
    from wgfbench.host import default_host

    host = default_host()
    out = []
    for name in problems:
        if name in host.problems:
            try:
                out.append(wgfbench.get_problem(name, host).primary_metric)
            except Exception:  # show must work even if a problem no longer builds
                pass
    return out


def final_metrics(results: pd.DataFrame, metrics: Sequence[str] | None) -> pd.DataFrame:
    """One row per (problem, solver, seed): the value of each metric at the problem's final time
    (``metrics``, or :data:`KEY_METRICS` and the problems' primary metrics when ``None``, then
    preceded by the per-case :data:`CASE_METRICS`)."""
    timed = results[results["t"].notna()]
    if timed.empty:
        return pd.DataFrame()
    t_final = timed.groupby("problem")["t"].transform("max")
    final = timed[np.isclose(timed["t"], t_final)]
    if metrics is None:
        primary = primary_metrics(final["problem"].unique())
        wanted = list(dict.fromkeys([*KEY_METRICS, *primary]))
        present = [m for m in wanted if m in set(final["metric"])]
        if not present:
            present = sorted(final["metric"].unique())
    else:
        present = list(metrics)
    final = final[final["metric"].isin(present)]
    # A metric logged per step at the final time (step ≥ 0) and per snapshot (step −1): keep the snapshot.
    final = final.sort_values("step").groupby(["solver", "problem", "seed", "metric"], as_index=False).first()
    table = final.pivot_table(
        index=["problem", "solver", "seed"], columns="metric", values="value", aggfunc="first"
    )
    table = table[[m for m in present if m in table.columns]]
    if metrics is None:  # the ranking score and the integrity flags of each case come first
        per_case = results[results["t"].isna() & results["metric"].isin(CASE_METRICS)]
        if not per_case.empty:
            flags = per_case.pivot_table(
                index=["problem", "solver", "seed"], columns="metric", values="value", aggfunc="first"
            )
            table = flags[[m for m in CASE_METRICS if m in flags.columns]].join(table, how="outer")
    return table.reset_index()


def plot_final_snapshots(run: RunDir, cases: pd.DataFrame, path: Path) -> Path:
    """One PNG of every ok case's final snapshot beside a reference draw at its time, a block of
    rows per problem (:func:`wgfbench.reports.figures.draw_snapshots`: heat maps in 2-D, density
    curves in 1-D, radial profiles for d ≥ 3). :class:`WgfbenchError` when no case is ok."""
    ok = cases[cases["status"] == "ok"]
    if ok.empty:
        raise WgfbenchError("no ok case to plot")
    blocks: list[tuple[str, list[figs.Snapshot], np.ndarray | None]] = []
    for problem in dict.fromkeys(ok["problem"]):
        rows = ok[ok["problem"] == problem].sort_values(["solver", "seed"])
        snapshots = []
        for _, row in rows.iterrows():
            label = f"{problem}\n{row['solver']} #{row['seed']}"
            snapshot = figs.load_snapshot(run, str(row["case_key"]), label)
            if snapshot is not None:
                snapshots.append(replace(snapshot, label=f"{label} t={snapshot.t:g}"))
        if not snapshots:
            continue
        n = max(figs.REFERENCE_POINTS, *(len(s.x) for s in snapshots))
        seed = int(rows["seed"].iloc[0])
        reference, _ = figs.reference_beside(problem, snapshots[0].t, n, run.manifest.base_seed, seed)
        blocks.append((problem, snapshots, reference))
    if not blocks:
        raise WgfbenchError(f"no ok case of {run.path} has a stored final snapshot to plot")
    counts = [figs.snapshot_panel_count(snaps, ref) for _, snaps, ref in blocks]
    ncols = min(figs.SNAPSHOT_PANELS_PER_ROW, max(counts))
    rows_per_block = [math.ceil(n / ncols) for n in counts]
    fig = figs.new_figure(3.3 * ncols, 3.0 * sum(rows_per_block))
    axes = fig.subplots(sum(rows_per_block), ncols, squeeze=False)
    start = 0
    for (_, snapshots, reference), n, n_rows in zip(blocks, counts, rows_per_block, strict=True):
        block = list(axes[start : start + n_rows].ravel())
        figs.draw_snapshots(block[:n], snapshots, reference)
        for ax in block[n:]:
            ax.set_axis_off()
        start += n_rows
    return figs.save(fig, path, dpi=100)


def show_run(
    run: RunDir, console: Console, metrics: Sequence[str] | None = None, figure: Path | None = None
) -> list[Path]:
    """Print the run's manifest, cases, skipped pairs and final-time metrics on ``console``; with
    ``figure``, also draw the final snapshots there (:func:`plot_final_snapshots`). Returns the
    figure files written. :class:`WgfbenchError` (a :class:`wgfbench.store.StoreError`) when
    ``run`` is not a readable run directory."""
    manifest, cases, results = run.manifest, run.cases(), run.results()
    versions = manifest.versions
    machine = manifest.machine if isinstance(manifest.machine, dict) else {}
    status = "completed " + manifest.completed if manifest.completed else manifest.status
    plan_cases, skipped = manifest.plan_cases(), manifest.plan_skipped()
    n_ok, n_failed = int((cases["status"] == "ok").sum()), int((cases["status"] == "failed").sum())
    m = manifest
    gpu = f", GPU {machine['cuda_device']}" if machine.get("cuda_device") else ""
    console.print(f"[bold]Run[/bold] {escape(str(m.run_id))}  ({escape(str(run.path))})")
    lines = [
        f"created {m.created}; {status}",
        f"tier {m.tier} (n_eval {m.n_eval}, budget {m.budget_seconds} s), {m.seeds} seed(s), "
        f"base seed {m.base_seed}, device {m.device}, {m.dtype}",
        f"{len(cases)}/{len(plan_cases)} case(s) committed: {n_ok} ok, {n_failed} failed; "
        f"{len(skipped)} pair(s) skipped",
        f"wgfbench {versions.get('wgfbench')}, torch {versions.get('torch')}, POT {versions.get('pot')}, "
        f"python {versions.get('python')}; git {m.git_revision}",
        f"{machine.get('cpu_model')}, {machine.get('torch_threads')} torch threads, "
        f"host {machine.get('host')}{gpu}",
        f"command: {m.command}",
    ]
    for line in lines:
        console.print("  " + line, markup=False)

    table = Table(title="Cases", title_justify="left")
    for col, justify in (
        ("problem", "left"),
        ("solver", "left"),
        ("seed", "right"),
        ("status", "left"),
        ("prepare s", "right"),
        ("solve s", "right"),
        ("score s", "right"),
        ("steps", "right"),
        ("peak MB", "right"),
        ("error", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for _, r in cases.iterrows():
        ok = r["status"] == "ok"
        table.add_row(
            r["problem"],
            r["solver"],
            str(r["seed"]),
            "[green]ok[/green]" if ok else "[red]failed[/red]",
            _seconds(r["prepare_seconds"]),
            _seconds(r["solve_seconds"]),
            _seconds(r["score_seconds"]),
            _fmt(None if pd.isna(r["n_steps"]) else int(r["n_steps"])),
            _fmt(r["peak_memory_mb"], 4),
            "" if ok else escape(f"{r['error_type']}: {_first_line(r['error'])}"),
        )
    console.print(table)
    groups: dict[tuple[str, str], list[str]] = {}
    for skip in skipped:
        groups.setdefault((skip["solver"], skip["reason"]), []).append(skip["problem"])
    for (solver, reason), names in groups.items():
        console.print("  [yellow]skipped[/yellow] " + escape(f"{solver} × {', '.join(names)}: {reason}"))

    final = final_metrics(results, list(metrics) if metrics else None)
    if not final.empty:
        table = Table(title="Metrics at the final time", title_justify="left")
        for col in final.columns:
            table.add_column(str(col), justify="left" if col in ("problem", "solver") else "right")
        for _, r in final.iterrows():
            table.add_row(*[_fmt(v) if col not in ("problem", "solver") else str(v) for col, v in r.items()])
        console.print(table)
    elif metrics:
        console.print(f"[yellow]none of the metrics {', '.join(metrics)} is in this run[/yellow]")
    if figure is None:
        return []
    plot_final_snapshots(run, cases, figure)
    console.print(f"final snapshots saved to {figure}")
    return [figure]
