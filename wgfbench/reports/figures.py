"""The seaborn figures of the reports, each drawn on a bare :class:`matplotlib.figure.Figure` with
an Agg canvas (no pyplot state, nothing left open) and saved as PNG:

* :func:`plot_error`: ``rel_error`` against t per solver, with W2 and its floor;
* :func:`plot_energy`: the energy of each solver's output against t beside the reference's;
* :func:`plot_snapshots`: each solver's final snapshot beside the reference at that time (2-D:
  heat maps of 2-D histograms; 1-D: density curves; d ≥ 3: radial profiles, the density of
  |x − mean of the reference|);
* :func:`plot_pareto` and :func:`plot_pareto_summary`: the score against wall time.

Reference draws for the snapshot figures come from :func:`reference_draw`, seeded by
:func:`wgfbench.seeding.reference_seed` with the role ``"show"`` and no salt: they are never the
draws a case was scored against.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SNAPSHOT_PANELS_PER_ROW = 4
SNAPSHOT_DPI = 90
"""The snapshot figures have up to a dozen panels: a lower resolution keeps their files small."""
HIST_BINS = 40
HIST_BINS_2D = 30
REFERENCE_POINTS = 20_000
"""Size of the reference draw of the snapshot figures (at least the snapshots' size): large, so
that the reference curve or heat map shows the density rather than its sampling noise."""


def new_figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas, laid out by the constrained layout engine."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG with an adaptive 256-colour palette: line plots and heat maps lose
    nothing visible, and the files shrink with the HTML report that embeds them (the committed
    quick-tier report went from 13.2 MB to 4.4 MB)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    fig.clear()
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def _palette(order: Sequence[str]) -> dict[str, Any]:
    import seaborn as sns

    return dict(zip(order, sns.color_palette("tab10", n_colors=max(len(order), 1)), strict=False))


_BAND = {"x": "t", "y": "value", "hue": "solver", "estimator": "median", "errorbar": ("pi", 100)}


# --------------------------------------------------------------------------------------------------
# Error and energy against time


def plot_error(problem: str, snap_p: pd.DataFrame, order: list[str], path: Path) -> Path:
    """PNG of rel_error(t), t > 0, per solver (median over seeds, band from min to max); a second
    panel of W2(t) with each solver's W2 floor dashed where the floor was scored."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    palette = _palette(order)
    rel = snap_p[(snap_p["metric"] == "rel_error") & (snap_p["t"] > 0)]
    w2 = snap_p[snap_p["metric"] == "w2"]
    floor = snap_p[snap_p["metric"] == "w2_floor"]
    two_panels = len(w2) > 0 and len(floor) > 0

    fig = new_figure(11.0 if two_panels else 6.0, 4.2)
    axes = fig.subplots(1, 2 if two_panels else 1, squeeze=False)[0]
    ax = axes[0]
    if len(rel):
        hue_order = [s for s in order if s in set(rel["solver"])]
        sns.lineplot(data=rel, hue_order=hue_order, palette=palette, marker="o", ax=ax, **_BAND)
        if (rel["value"] > 0).all():
            ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("rel_error (median over seeds, band min–max)")
    ax.set_title(problem)
    if two_panels:
        ax = axes[1]
        hue_order = [s for s in order if s in set(w2["solver"])]
        sns.lineplot(data=w2, hue_order=hue_order, palette=palette, marker="o", ax=ax, **_BAND)
        lines = {
            solver: rows.groupby("t")["value"].median().sort_index()
            for solver, rows in floor.groupby("solver")
        }
        first = next(iter(lines.values()))
        shared = all(line.index.equals(first.index) and np.allclose(line, first) for line in lines.values())
        # Sample floors depend only on the reference draws and coincide across solvers; grid
        # floors depend on each solver's grid and are drawn in its colour.
        for solver, line in [(None, first)] if shared else lines.items():
            colour = "black" if solver is None else palette.get(solver, "grey")
            ax.plot(line.index, line.to_numpy(), linestyle="--", color=colour, alpha=0.8)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="black" if shared else "grey", linestyle="--"))
        labels.append("W2 floor" if shared else "W2 floor (per solver, dashed)")
        ax.legend(handles, labels, fontsize="small")
        ax.set_xlabel("t")
        ax.set_ylabel("W2 (not squared)")
        ax.set_title(f"{problem}: W2 and its floor")
    return save(fig, path)


def plot_energy(problem: str, snap_p: pd.DataFrame, order: list[str], path: Path) -> Path | None:
    """PNG of the energy E(ρ_solver(t)) at the snapshot times per solver (median over seeds, band
    min–max) beside the reference's: ``energy_ref`` (the energy of the reference draw, black
    dashed) and ``energy_exact`` (the closed form where the reference has one, black dotted).
    ``None`` (nothing written) when no solver's energy was scored."""
    import seaborn as sns

    energy = snap_p[snap_p["metric"] == "energy"]
    energy = energy[np.isfinite(energy["value"].to_numpy(dtype=float))]
    if energy.empty:
        return None
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    hue_order = [s for s in order if s in set(energy["solver"])]
    sns.lineplot(data=energy, hue_order=hue_order, palette=_palette(order), marker="o", ax=ax, **_BAND)
    for metric, style, label in (
        ("energy_ref", "--", "reference draw"),
        ("energy_exact", ":", "exact"),
    ):
        rows = snap_p[snap_p["metric"] == metric]
        if len(rows):
            line = rows.groupby("t")["value"].median().sort_index()
            ax.plot(line.index, line.to_numpy(), linestyle=style, color="black", linewidth=2, label=label)
    ax.legend(fontsize="small")
    ax.set_xlabel("t")
    ax.set_ylabel("energy E(ρ(t)) (median over seeds, band min–max)")
    ax.set_title(f"{problem}: energy decay")
    return save(fig, path)


# --------------------------------------------------------------------------------------------------
# Final snapshots beside the reference


@dataclass(frozen=True)
class Snapshot:
    """A solver's final snapshot for a figure: its label, the points ``x`` (n, d) and time ``t``."""

    label: str
    x: np.ndarray
    t: float


def reference_draw(problem: Any, t: float, n: int, seed: int) -> np.ndarray | None:
    """``n`` points of the reference of ``problem`` (a :class:`wgfbench.Problem`) at time ``t``
    drawn with a generator seeded by ``seed`` (see :func:`wgfbench.seeding.reference_seed`, role
    ``"show"``), as a float64 array; ``None`` when the reference cannot sample at ``t``."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    try:
        sample = problem.reference.sample(float(t), int(n), generator)
    except Exception:  # a figure never fails a report: the panel goes without its reference
        return None
    return np.asarray(
        sample.detach().to("cpu", torch.float64).numpy() if hasattr(sample, "detach") else sample
    )


def reference_beside(
    problem: str, t: float, n: int, base_seed: int, seed: int
) -> tuple[np.ndarray | None, Any]:
    """What a snapshot panel shows beside a solver's points: ``(draw, density)``, ``n`` points of
    the registered problem's reference at ``t`` (generator seeded by ``reference_seed(base_seed,
    problem, seed, t, "show")``, never the scoring salt) and, in 1-D, x ↦ its density. Both are
    ``None`` when the problem is not registered here, no longer builds or cannot sample at ``t``:
    a figure never fails a report."""
    import wgfbench
    from wgfbench.host import default_host
    from wgfbench.seeding import reference_seed

    host = default_host()
    if problem not in host.problems:
        return None, None
    try:
        spec = wgfbench.get_problem(problem, host)
    except Exception:  # a problem that no longer builds still gets its snapshots drawn
        return None, None
    draw = reference_draw(spec, t, n, reference_seed(base_seed, problem, seed, t, "show"))
    density = _density_1d(spec, t) if draw is not None and draw.shape[1] == 1 else None
    return draw, density


def load_snapshot(run: Any, case_key: str, label: str) -> Snapshot | None:
    """The stored final snapshot of a case of ``run`` (a :class:`wgfbench.rundir.RunDir`) as a
    :class:`Snapshot`, or ``None`` when the case stored none (an older run); a damaged file raises
    :class:`wgfbench.store.StoreError` naming it."""
    if not run.final_snapshot_path(case_key).is_file():
        return None
    arrays = run.final_snapshot(case_key)
    x = arrays.get("x")
    if x is None or x.ndim != 2 or not len(x):
        return None
    return Snapshot(label, np.asarray(x), float(arrays["t"]))


def _density_1d(problem: Any, t: float) -> Any:
    """x ↦ the reference density of ``problem`` at ``t`` on a 1-D grid (``None`` without one)."""
    import torch

    log_density = getattr(getattr(problem, "reference", None), "log_density", None)
    if log_density is None:
        return None

    def density(grid: np.ndarray) -> np.ndarray:
        values = log_density(float(t), torch.as_tensor(grid[:, None], dtype=torch.float64))
        return np.exp(np.asarray(values.detach().cpu().numpy(), dtype=float).reshape(-1))

    return density


def _limits(clouds: Sequence[np.ndarray], axis: int) -> tuple[float, float]:
    """A shared range of coordinate ``axis``: the 0.5–99.5 % quantiles of all clouds, widened 5 %."""
    values = np.concatenate([c[:, axis] for c in clouds if len(c)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return -1.0, 1.0
    low, high = np.quantile(values, [0.005, 0.995])
    pad = 0.05 * (high - low) if high > low else 0.5
    return float(low - pad), float(high + pad)


def _radii(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x - centre, axis=1)


def _panels(snapshots: Sequence[Snapshot], reference: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    """(title, points) of each panel: the snapshots, after the reference draw in 2-D."""
    panels = [(s.label, s.x) for s in snapshots]
    if snapshots and snapshots[0].x.shape[1] == 2 and reference is not None:
        panels.insert(0, (f"reference draw (n = {len(reference)})", reference))
    return panels


def snapshot_panel_count(snapshots: Sequence[Snapshot], reference: np.ndarray | None) -> int:
    """How many axes :func:`draw_snapshots` fills."""
    return len(_panels(snapshots, reference))


def plot_snapshots(
    problem: str,
    snapshots: Sequence[Snapshot],
    reference: np.ndarray | None,
    path: Path,
    reference_density: Any = None,
) -> Path:
    """PNG with one panel per solver snapshot beside the reference at the snapshot's time, drawn
    by :func:`draw_snapshots`, :data:`SNAPSHOT_PANELS_PER_ROW` panels a row."""
    n = max(snapshot_panel_count(snapshots, reference), 1)
    ncols = min(SNAPSHOT_PANELS_PER_ROW, n)
    nrows = math.ceil(n / ncols)
    fig = new_figure(3.3 * ncols, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    kind = draw_snapshots(list(axes), snapshots, reference, reference_density)
    for ax in axes[n:]:
        ax.set_axis_off()
    t = snapshots[0].t if snapshots else math.nan
    fig.suptitle(f"{problem}: final snapshot vs reference at t = {t:g} — {kind}", fontsize=10)
    return save(fig, path, dpi=SNAPSHOT_DPI)


def _profile_panel(
    ax: Any,
    values: np.ndarray,
    reference: np.ndarray | None,
    edges: np.ndarray,
    label: str,
    grid: np.ndarray | None = None,
    exact: np.ndarray | None = None,
) -> None:
    """One panel of a 1-D density (or a radial profile): the reference draw's histogram filled in
    grey, the exact density ``exact`` on ``grid`` in black when known, the solver's histogram as a
    line; all as densities on the shared bin ``edges``."""
    import seaborn as sns

    common = {"bins": edges, "stat": "density", "ax": ax}
    if reference is not None:
        sns.histplot(
            x=reference, element="step", fill=True, color="grey", alpha=0.35, label="reference draw", **common
        )
    if exact is not None and grid is not None:
        ax.plot(grid, exact, color="black", linewidth=1.2, label="reference density")
    sns.histplot(x=values, element="poly", fill=False, color="C0", linewidth=1.6, label=label, **common)
    ax.set_title(label, fontsize=9)
    ax.legend(fontsize=6)


def draw_snapshots(
    axes: Sequence[Axes],
    snapshots: Sequence[Snapshot],
    reference: np.ndarray | None,
    reference_density: Any = None,
) -> str:
    """Draw the snapshots of one problem beside its reference draw into ``axes`` (one per panel,
    :func:`snapshot_panel_count`); returns what the panels show.

    By dimension d of the points: d = 1: density curves (histograms of the snapshot and of the
    reference draw, and the reference's exact density when ``reference_density`` (a callable
    x ↦ density on a 1-D grid) is given); d = 2: heat maps (2-D histograms as densities on a
    shared range; the first panel is the reference draw); d ≥ 3: radial profiles, the histogram
    density of |x − m| with m the mean of the reference draw (of the snapshots when there is
    none)."""
    import seaborn as sns

    if not snapshots:
        return "no snapshot"
    dim = int(snapshots[0].x.shape[1])
    panels = _panels(snapshots, reference)
    clouds = [p for _, p in panels if p is not None] + ([reference] if reference is not None else [])
    if dim == 1:
        lo, hi = _limits(clouds, 0)
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        grid = np.linspace(lo, hi, 400)
        exact = None
        if reference_density is not None:
            try:
                exact = np.asarray(reference_density(grid), dtype=float)
            except Exception:
                exact = None
        for ax, (label, x) in zip(axes, panels, strict=False):
            reference_1d = reference[:, 0] if reference is not None else None
            _profile_panel(ax, x[:, 0], reference_1d, edges, label, grid=grid, exact=exact)
            ax.set_xlabel("x")
    elif dim == 2:
        xlim, ylim = _limits(clouds, 0), _limits(clouds, 1)
        for ax, (label, x) in zip(axes, panels, strict=False):
            sns.histplot(
                x=x[:, 0],
                y=x[:, 1],
                bins=HIST_BINS_2D,
                binrange=(xlim, ylim),
                stat="density",
                cmap="mako_r",
                cbar=False,
                ax=ax,
            )
            ax.set_xlim(xlim)
            ax.set_ylim(ylim)
            ax.set_xlabel("x₁")
            ax.set_ylabel("x₂")
            ax.set_title(label, fontsize=9)
    else:
        centre = (reference if reference is not None else np.concatenate(clouds)).mean(axis=0)
        radii = [_radii(c, centre) for c in clouds]
        edges = np.linspace(0.0, _limits([r[:, None] for r in radii], 0)[1], HIST_BINS + 1)
        ref_r = _radii(reference, centre) if reference is not None else None
        for ax, (label, x) in zip(axes, panels, strict=False):
            _profile_panel(ax, _radii(x, centre), ref_r, edges, label)
            ax.set_xlabel("|x − mean of the reference|")
    return {1: "density", 2: "2-D histogram"}.get(dim, f"radial profile (d = {dim})")


# --------------------------------------------------------------------------------------------------
# Score against wall time


def _draw_front(ax: Any, points: pd.DataFrame) -> None:
    """The dashed Pareto front of ``points`` (columns ``seconds``, ``error``): drawn when at least
    two points are on it (one solver faster and better than all others leaves no front)."""
    if len(points) < 2:
        return
    front = points.iloc[_pareto_front(points["seconds"].to_numpy(), points["error"].to_numpy())]
    if len(front) > 1:
        ax.plot(
            front["seconds"], front["error"], linestyle="--", color="black", alpha=0.5, label="Pareto front"
        )


def _pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated (no other point is at most as slow and as bad and
    strictly better in one), sorted by x."""
    order = np.lexsort((y, x))
    front, best = [], math.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def pareto_points(table: pd.DataFrame) -> pd.DataFrame:
    """One point per row with a score: ``solver``, ``role``, ``seconds`` (median prepare + median
    solve seconds over seeds), ``error`` (median ``trajectory_error``), ``low``, ``high``."""
    seconds = table["prepare_seconds_median"].fillna(0.0) + table["solve_seconds_median"]
    frame = pd.DataFrame(
        {
            "solver": table["solver"],
            "role": table["role"],
            "seconds": seconds,
            "error": table["trajectory_error_median"],
            "low": table["low"],
            "high": table["high"],
        }
    )
    ok = frame["seconds"].notna() & frame["error"].notna() & (frame["seconds"] > 0) & (frame["error"] > 0)
    return frame[ok].reset_index(drop=True)


def plot_pareto(problem: str, table: pd.DataFrame, path: Path) -> Path | None:
    """PNG of the median ``trajectory_error`` (with its interval) against prepare + solve seconds
    per row of one problem (log–log), the Pareto front of the solvers dashed; ``None`` when no row
    has both."""
    import seaborn as sns

    points = pareto_points(table)
    if points.empty:
        return None
    order = list(points["solver"])
    fig = new_figure(8.0, 4.5)
    ax = fig.subplots()
    palette = _palette(order)
    for _, row in points.iterrows():
        ax.errorbar(
            row["seconds"],
            row["error"],
            yerr=[[max(row["error"] - row["low"], 0.0)], [max(row["high"] - row["error"], 0.0)]],
            fmt="none",
            ecolor=palette[row["solver"]],
            alpha=0.6,
        )
    sns.scatterplot(
        data=points, x="seconds", y="error", hue="solver", style="role", palette=palette, s=70, ax=ax
    )
    solvers = points[points["role"] == "solver"].reset_index(drop=True)
    _draw_front(ax, solvers)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("prepare + solve seconds (median over seeds)")
    ax.set_ylabel("trajectory_error (median, interval)")
    ax.set_title(f"{problem}: error vs wall time")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, path)


def plot_pareto_summary(per_problem: dict[str, pd.DataFrame], path: Path) -> Path | None:
    """PNG of the cross-problem Pareto view: per solver (role ``solver``) one large point at the
    median over its problems of prepare + solve seconds and of ``trajectory_error``, the
    per-problem points behind it, and the Pareto front of the large points; ``None`` when no solver
    has a point."""
    import seaborn as sns

    frames = []
    for problem, table in per_problem.items():
        points = pareto_points(table)
        frames.append(points[points["role"] == "solver"].assign(problem=problem))
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if points.empty:
        return None
    medians = points.groupby("solver", sort=True)[["seconds", "error"]].median().reset_index()
    order = list(medians["solver"])
    palette = _palette(order)
    fig = new_figure(9.0, 5.0)
    ax = fig.subplots()
    sns.scatterplot(
        data=points,
        x="seconds",
        y="error",
        hue="solver",
        palette=palette,
        alpha=0.3,
        s=20,
        ax=ax,
        legend=False,
    )
    sns.scatterplot(
        data=medians, x="seconds", y="error", hue="solver", palette=palette, s=160, edgecolor="black", ax=ax
    )
    _draw_front(ax, medians)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("prepare + solve seconds (median over problems of the median over seeds)")
    ax.set_ylabel("trajectory_error (median over problems)")
    ax.set_title("All problems: error vs wall time (small points: one problem)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, path)
