"""The run directory as one typed object: :class:`RunDir` reads and writes it, :class:`Manifest`
is its ``manifest.json``.

The runner writes the manifest and consolidates a run through a :class:`RunDir`
(:mod:`wgfbench.runner.campaign`; its per-case commits go through :mod:`wgfbench.store` directly);
``wgfbench show``, the leaderboard (:mod:`wgfbench.reports.leaderboard`) and ``wgfbench compare``
(:mod:`wgfbench.reports.compare`) read runs through one. File formats, atomic writes and the
fallback to parts live in :mod:`wgfbench.store`; this module gives them names and types, so no
reader digs in a JSON dict with ``.get``::

    run = RunDir("runs/fp")
    run.manifest.tier, run.manifest.base_seed, run.manifest.machine_line()
    cases = run.cases()           # one row per case (status, error, timings, peak memory)
    results = run.results()       # long format: run_id, solver, problem, seed, t, step, metric, value
    x = run.final_snapshot(cases.case_key[0])["x"]

A manifest records the plan, the campaign spec, one :class:`Session` per start or ``--resume``,
versions, the machine and the :class:`Scoring` scheme (its salt revealed once the session
stopped). Fields this wgfbench does not know (a newer writer's) are kept on a round trip;
manifests of every readable schema version (:data:`wgfbench.store.READABLE_SCHEMA_VERSIONS`) load.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic

from wgfbench import store
from wgfbench.store import StoreError

__all__ = ["Manifest", "RunDir", "Scoring", "Session"]


class _Record(pydantic.BaseModel):
    """A JSON object of the run directory: known fields typed, unknown fields kept as they are."""

    model_config = pydantic.ConfigDict(extra="allow", validate_assignment=True)

    def plain(self) -> dict[str, Any]:
        """The JSON object to write: known fields, then the unknown ones kept from the file."""
        return self.model_dump(mode="json")


class Session(_Record):
    """One start of a campaign on the directory: the first run, or a ``--resume``."""

    started: str | None = None
    finished: str | None = None
    command: str | None = None
    git_revision: str | None = None
    git_dirty: bool | None = None
    executor: dict[str, Any] | str | None = None
    spec: dict[str, Any] | None = None
    ran: int = 0
    interrupted: bool = False
    salt_sha256: str | None = None
    error: str | None = None


class Scoring(_Record):
    """How the run was scored: scheme version and sizes, and the scoring salt of the last session
    (``salt`` is ``None`` while the session runs: only its SHA-256 is on disk then). Earlier
    sessions' digests and salts are in ``sessions``."""

    version: int = 1
    salt: str | None = None
    salt_sha256: str | None = None
    reproduced: bool = False
    rule: str | None = None
    floor_scheme: Any = None
    n_projections: int | None = None
    n_eval: int | None = None
    n_output: int | None = None
    n_reference: int | None = None
    sessions: list[dict[str, Any]] = pydantic.Field(default_factory=list)


class Manifest(_Record):
    """``manifest.json`` of a run directory.

    ``plan`` holds ``cases`` (solver, problem, repetition, key, overrides) and ``skipped``
    (solver, problem, reason); ``spec`` the campaign as a plain dict (what ``wgfbench rerun``
    repeats); ``git_revision`` the revision of the last session (``+dirty`` when the tree had
    local changes); ``completed`` the time the last session finished every case, ``None`` while a
    session runs or after one stopped early.
    """

    schema_version: int
    run_id: str
    created: str | None = None
    command: str | None = None
    tier: str | None = None
    n_eval: int | None = None
    budget_seconds: float | None = None
    budget_clock: str | None = None
    base_seed: int = 0
    seeds: int = 1
    device: str = "cpu"
    dtype: str = "float64"
    plan: dict[str, Any] = pydantic.Field(default_factory=dict)
    spec: dict[str, Any] | None = None
    versions: dict[str, Any] = pydantic.Field(default_factory=dict)
    git_revision: str | None = None
    machine: dict[str, Any] | str | None = None
    completed: str | None = None
    interrupted: bool = False
    resumed: list[str] = pydantic.Field(default_factory=list)
    sessions: list[Session] = pydantic.Field(default_factory=list)
    scoring: Scoring = pydantic.Field(default_factory=Scoring)

    @property
    def scoring_version(self) -> int:
        """Version of the scoring scheme; runs of different versions are never ranked together."""
        return self.scoring.version

    @property
    def status(self) -> str:
        """``completed``, ``interrupted`` or ``in progress or killed (not completed)``."""
        if self.completed:
            return "completed"
        return "interrupted" if self.interrupted else "in progress or killed (not completed)"

    def plan_cases(self) -> list[dict[str, Any]]:
        """The planned cases (solver, problem, repetition, key, overrides)."""
        return list(self.plan.get("cases", []))

    def plan_skipped(self) -> list[dict[str, Any]]:
        """The (solver, problem, reason) pairs the plan skipped."""
        return list(self.plan.get("skipped", []))

    def flat_versions(self) -> dict[str, str]:
        """``{"torch": "2.1", "plugins": {"x": "1"}}`` → ``{"torch": "2.1", "plugins/x": "1"}``."""
        return _flat(self.versions)

    def machine_line(self) -> str:
        """One line naming the machine: device, GPU, CPU model, cores available, torch threads and
        host (what :func:`wgfbench.runner.provenance.machine_info` recorded)."""
        record = self.machine if isinstance(self.machine, dict) else {}
        source = {"device": self.device, **record}
        labels = {
            "device": "device",
            "cuda_device": "GPU",
            "cpu_model": "CPU",
            "cpu_affinity": "cores available",
            "torch_threads": "torch threads",
            "host": "host",
        }
        parts = [
            f"{label} {source[key]}" for key, label in labels.items() if source.get(key) not in (None, "")
        ]
        if isinstance(self.machine, str) and self.machine:
            parts.insert(0, self.machine)
        return ", ".join(parts) or "not recorded"


def _flat(versions: Any, prefix: str = "") -> dict[str, str]:
    if not isinstance(versions, dict):
        return {}
    flat: dict[str, str] = {}
    for key, value in versions.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}/")
        elif value is not None:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def parse_manifest(data: dict[str, Any], where: Path | str = "manifest.json") -> Manifest:
    """``data`` (a manifest's JSON object) as a :class:`Manifest`; :class:`StoreError` naming the
    file and the field when a known field has the wrong type."""
    try:
        return Manifest.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise StoreError(f"{where} is not a valid wgfbench manifest ({problems})") from None


class RunDir:
    """One run directory (layout in :mod:`wgfbench.store`).

    Reading: :attr:`manifest` (read once and kept; :meth:`reload` rereads it), :meth:`cases`,
    :meth:`results`, :meth:`case_records`, :meth:`final_snapshot`. Writing (the runner):
    :meth:`write_manifest`, :meth:`write_case`, :meth:`consolidate`. A directory that is not a run
    raises :class:`wgfbench.store.StoreError` on first read, naming the path.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- manifest ---------------------------------------------------------------------------------

    @property
    def has_manifest(self) -> bool:
        """Whether the directory holds a manifest (a run was started in it)."""
        return store.manifest_path(self.path).is_file()

    @cached_property
    def manifest(self) -> Manifest:
        """The typed manifest (:class:`StoreError` when missing, damaged or of an unread schema)."""
        return parse_manifest(store.read_manifest(self.path), store.manifest_path(self.path))

    def reload(self) -> Manifest:
        """Reread ``manifest.json`` (another process may have written it)."""
        self.__dict__.pop("manifest", None)
        return self.manifest

    def write_manifest(self, manifest: Manifest) -> None:
        """Write ``manifest`` atomically and keep it as :attr:`manifest`."""
        store.write_manifest(self.path, manifest.plain())
        self.__dict__["manifest"] = manifest

    # -- cases and results ------------------------------------------------------------------------

    def cases(self) -> pd.DataFrame:
        """One row per case (:data:`wgfbench.store.CASES_COLUMNS`), consolidated or from parts."""
        return store.read_cases(self.path)

    def results(self) -> pd.DataFrame:
        """The long results table (public schema), consolidated or from parts."""
        return store.read_results(self.path)

    def case_records(self) -> list[dict[str, Any]]:
        """Full case records (traceback, stage, provenance, the solver's ``info``) in plan order."""
        return store.read_case_records(self.path)

    def case_record(self, case_key: str) -> dict[str, Any]:
        """The full record of one case."""
        return store.read_case_record(store.case_json_path(self.path, case_key))

    def committed_cases(self) -> dict[str, dict[str, Any]]:
        """Case key → record of every committed case (what ``--resume`` keeps)."""
        return store.committed_cases(self.path)

    def final_snapshot_path(self, case_key: str) -> Path:
        """Where the case's final snapshot is stored (``x``, ``t``; resampled to ``n_eval``)."""
        return store.final_snapshot_path(self.path, case_key)

    def final_snapshot(self, case_key: str) -> dict[str, np.ndarray]:
        """The case's final snapshot: ``x`` (n_eval, d) float64 and ``t``."""
        return store.load_npz(self.final_snapshot_path(case_key))

    def artifacts_dir(self, case_key: str) -> Path:
        """The case's artefact directory (``ctx.artifacts`` of its solver, its final snapshot)."""
        return store.artifacts_dir(self.path, case_key)

    def write_case(self, record: dict[str, Any], results: pd.DataFrame) -> None:
        """Commit one case (results part first, then ``case.json``)."""
        store.write_case(self.path, record, results)

    def consolidate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Gather the parts into ``cases.parquet`` and ``results.parquet``."""
        return store.consolidate(self.path)
