"""A campaign: a plan run by an executor into a run directory, resumable and fault-isolated.

:func:`run_plan` takes the run directory's lock (a second process writing the same directory is
refused), writes the manifest, hands the cases still to do to an executor
(:mod:`wgfbench.runner.executors`) and commits every outcome the moment it arrives (parts first,
then the ``case.json`` marker: :mod:`wgfbench.store`). A case that raises, diverges, overruns
its budget or kills its process is a failure row, never the end of the campaign.
``KeyboardInterrupt`` (Ctrl-C; the CLI turns SIGTERM into one) stops the executor, consolidates
what finished and re-raises: ``--resume`` then runs only what is missing.

Each session of a run (the first, and each ``--resume``) is recorded in the manifest's
``sessions`` with its command, git revision, versions, machine and executor; each case records
its own revision and versions (:func:`wgfbench.runner.provenance.case_provenance`).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from wgfbench import store
from wgfbench.context import TIERS, get_tier
from wgfbench.errors import ConfigError, WgfbenchError
from wgfbench.host import Host, default_host
from wgfbench.metrics.cache import FLOOR_SCHEME, FloorCache
from wgfbench.metrics.distances import N_PROJECTIONS
from wgfbench.metrics.scorer import SCORING_VERSION
from wgfbench.rundir import Manifest, RunDir, Session
from wgfbench.runner.execution import CaseOutcome, CaseTask
from wgfbench.runner.executors import CaseEvents, Executor, LocalExecutor
from wgfbench.runner.plan import Case, Plan, Skip
from wgfbench.runner.provenance import git_state, machine_info, utc_now, versions
from wgfbench.seeding import new_scoring_salt, salt_digest

LOCK = ".lock"
CHECKPOINTS = "checkpoints"


@dataclass
class RunResult:
    """A finished (or interrupted) campaign: every committed case record in plan order, how many
    ran in this call and how many were taken over from an earlier one (``--resume``)."""

    run_dir: Path
    run_id: str
    records: list[dict[str, Any]]
    ran: int
    reused: int
    skipped: list[Skip]
    interrupted: bool = False

    @property
    def n_ok(self) -> int:
        """Committed cases with status ok."""
        return sum(r["status"] == "ok" for r in self.records)

    @property
    def n_failed(self) -> int:
        """Committed cases with status failed."""
        return sum(r["status"] == "failed" for r in self.records)

    def cases(self) -> pd.DataFrame:
        """The run's ``cases.parquet`` (see :func:`wgfbench.store.read_cases`)."""
        return store.read_cases(self.run_dir)

    def results(self) -> pd.DataFrame:
        """The run's long results table (see :func:`wgfbench.store.read_results`)."""
        return store.read_results(self.run_dir)


def default_run_dir(tier: str, root: Path = Path("runs")) -> Path:
    """``runs/<UTC timestamp>-<tier>``."""
    return root / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{tier}"


# ----------------------------------------------------------------------------------------------
# The run directory: lock, manifest


class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock`` held while a campaign writes the directory; a
    second campaign on the same directory gets a :class:`WgfbenchError` naming the holder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WgfbenchError(
                f"{self.path.parent} is being written by another wgfbench run ({holder}); wait for it to "
                "finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _prepare_out(out: Path, resume: bool) -> None:
    """Refuse an ``out`` that cannot take this run, before anything is written."""
    if out.exists() and not out.is_dir():
        raise WgfbenchError(f"--out {out} is a file, not a directory")
    if store.manifest_path(out).is_file():
        if not resume:
            raise WgfbenchError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
    elif out.exists() and any(p.name != LOCK for p in out.iterdir()):
        raise WgfbenchError(f"{out} exists and is neither empty nor a wgfbench run; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WgfbenchError(f"cannot create the run directory {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise WgfbenchError(f"cannot write to the run directory {out}: permission denied")


def _plan_entries(plan: Plan, keys: Mapping[Case, str]) -> dict[str, Any]:
    return {
        "cases": [
            {
                "solver": c.solver,
                "problem": c.problem,
                "repetition": c.repetition,
                "key": keys[c],
                "overrides": c.overrides.to_dict(),
            }
            for c in plan.cases
        ],
        "skipped": [{"solver": s.solver, "problem": s.problem, "reason": s.reason} for s in plan.skipped],
    }


def _merge_plan_entries(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    seen = {c["key"] for c in new["cases"]}
    cases = [c for c in old.get("cases", []) if c["key"] not in seen] + list(new["cases"])
    skip_seen = {(s["solver"], s["problem"]) for s in new["skipped"]}
    skipped = [s for s in old.get("skipped", []) if (s["solver"], s["problem"]) not in skip_seen]
    return {"cases": cases, "skipped": skipped + list(new["skipped"])}


def _scoring_salt(manifest: Manifest, given: str | None = None) -> str:
    """The scoring salt of this session of the run, recorded in ``manifest.scoring``.

    Every session (a new run, or each ``--resume``) draws a fresh salt
    (:func:`wgfbench.seeding.new_scoring_salt`) and records only its SHA-256 while cases run; the
    salt enters the manifest when the session stops (completed, interrupted or failed), so no
    solver can read it from the run directory, and every score can be recomputed afterwards.
    Earlier sessions' salts move to ``scoring.sessions`` (a salt of a session killed outright,
    never revealed, stays ``None`` there); each case records the digest of the salt that scored it
    (``score_salt_sha256`` in ``cases.parquet``). A ``given`` salt (``--reproduce-salt``, to
    reproduce an earlier run's scores) is used as is and the manifest marks it ``reproduced``.
    """
    scoring = manifest.scoring
    if scoring.salt_sha256:
        scoring.sessions = [*scoring.sessions, {"salt_sha256": scoring.salt_sha256, "salt": scoring.salt}]
    if given is not None:
        if not given or len(given) > 256:
            raise ConfigError("a scoring salt is a non-empty string (the hex of manifest scoring.salt)")
        salt = given
    else:
        salt = new_scoring_salt()
    tier = TIERS.get(str(manifest.tier))
    manifest.scoring = scoring.model_copy(
        update={
            "salt": None,
            "salt_sha256": salt_digest(salt),
            "reproduced": given is not None,
            "rule": "reference draws seeded by hash(role, base_seed, problem, repetition, t, salt)",
            "version": SCORING_VERSION,
            "floor_scheme": FLOOR_SCHEME,
            "n_projections": N_PROJECTIONS,
            **(
                {"n_eval": tier.n_eval, "n_output": tier.n_output, "n_reference": tier.n_reference}
                if tier is not None
                else {}
            ),
        }
    )
    return salt


# ----------------------------------------------------------------------------------------------
# Writing outcomes


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(p in ("..", "") for p in path.parts):
        raise WgfbenchError(f"artefact path {name!r} escapes the case's artefact directory")
    return path


def commit_outcome(out: Path, outcome: CaseOutcome) -> None:
    """Write a case's artefacts, then commit its rows and record (:func:`wgfbench.store.write_case`).
    Artefact paths that would escape ``artifacts/<case_key>/`` fail the case instead."""
    key = outcome.record["case_key"]
    directory = store.artifacts_dir(out, key)
    try:
        paths = {_safe_relative(name): data for name, data in outcome.artifacts.items()}
    except WgfbenchError as exc:
        outcome.record.update(
            {"status": "failed", "error_type": "UnsafeArtifact", "error": str(exc), "stage": "store"}
        )
        paths = {}
    for relative, data in paths.items():
        store.write_bytes_atomic(directory / relative, data)
    results = outcome.results if outcome.record["status"] == "ok" else store.results_frame()
    store.write_case(out, outcome.record, results)


# ----------------------------------------------------------------------------------------------
# The campaign


def run_plan(
    plan: Plan,
    out: Path,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    host: Host | None = None,
    executor: Executor | None = None,
    events: CaseEvents | None = None,
    on_outcome: Callable[[CaseOutcome], None] | None = None,
    command: Sequence[str] | None = None,
    salt: str | None = None,
    floors: FloorCache | None = None,
    spec: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run every case of ``plan`` into the run directory ``out`` and consolidate it.

    ``out`` must be new or empty unless ``resume``: then committed cases (ok or failed) are kept
    and only the missing ones run (``retry_failed`` reruns failed ones too), so the run ends with
    every case exactly once; tier, base seed, device and dtype must match the earlier run.
    ``executor`` defaults to a :class:`LocalExecutor` (with ``floors``, the on-disk floor cache);
    ``events`` and ``on_outcome`` feed a display (the CLI's). ``salt`` reproduces the scores of an
    earlier run (its ``manifest.scoring.salt``). ``spec`` (the campaign as a plain dict, see
    :class:`wgfbench.runner.spec.CampaignSpec`) is recorded so ``wgfbench rerun`` can repeat it.
    Cases run grouped by problem and repetition, so a worker's score cache builds each large
    reference draw once and shares it across solvers.
    """
    host = host or default_host()
    out = Path(out)
    _prepare_out(out, resume)
    with RunLock(out):
        return _run_locked(
            plan,
            out,
            resume=resume,
            retry_failed=retry_failed,
            host=host,
            executor=executor or LocalExecutor(floors=floors),
            events=events or CaseEvents(),
            on_outcome=on_outcome,
            command=command,
            salt=salt,
            spec=spec,
        )


def _run_locked(
    plan: Plan,
    out: Path,
    *,
    resume: bool,
    retry_failed: bool,
    host: Host,
    executor: Executor,
    events: CaseEvents,
    on_outcome: Callable[[CaseOutcome], None] | None,
    command: Sequence[str] | None,
    salt: str | None,
    spec: Mapping[str, Any] | None,
) -> RunResult:
    keys = {case: case.key(host) for case in plan.cases}
    entries = _plan_entries(plan, keys)
    now = utc_now()
    run = RunDir(out)
    if run.has_manifest:
        manifest = run.manifest
        for name in ("tier", "base_seed", "device", "dtype", "budget"):
            recorded = getattr(manifest, "budget_seconds" if name == "budget" else name)
            if recorded != getattr(plan, name):
                raise ConfigError(
                    f"cannot resume {out}: its {name} is {recorded!r}, this plan's is {getattr(plan, name)!r}"
                )
        entries = _merge_plan_entries(manifest.plan, entries)
        manifest.resumed = [*manifest.resumed, now]
        manifest.schema_version = store.SCHEMA_VERSION  # readers take both; new cases are v3
    else:
        manifest = Manifest(
            schema_version=store.SCHEMA_VERSION,
            run_id=f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{plan.tier}-{os.urandom(3).hex()}",
            created=now,
        )
    revision, dirty = git_state()
    command_line = shlex.join(command if command is not None else sys.argv)
    session = Session(
        started=now,
        command=command_line,
        git_revision=revision,
        git_dirty=dirty,
        executor=executor.describe(),
        spec=dict(spec) if spec is not None else None,
    )
    manifest = manifest.model_copy(
        update={
            "command": command_line,
            "tier": plan.tier,
            "n_eval": get_tier(plan.tier).n_eval,
            "budget_seconds": plan.budget,
            "budget_clock": "cpu_per_thread",
            "base_seed": plan.base_seed,
            "seeds": max(plan.seeds, manifest.seeds if run.has_manifest else 0),
            "device": plan.device,
            "dtype": plan.dtype,
            "plan": entries,
            "versions": versions(host),
            "git_revision": None if revision is None else revision + ("+dirty" if dirty else ""),
            "machine": machine_info(plan.device),
            "completed": None,
            "interrupted": False,
            **({"spec": dict(spec)} if spec is not None else {}),
        }
    )
    salt = _scoring_salt(manifest, salt)
    session.salt_sha256 = manifest.scoring.salt_sha256
    manifest.sessions = [*manifest.sessions, session]
    run_id = manifest.run_id
    run.write_manifest(manifest)

    done = store.committed_cases(out)
    todo = [
        c for c in plan.cases if keys[c] not in done or (retry_failed and done[keys[c]]["status"] == "failed")
    ]
    reused = len(plan.cases) - len(todo)
    order = {name: i for i, name in enumerate(dict.fromkeys(c.problem for c in plan.cases))}
    todo.sort(key=lambda c: (order[c.problem], c.repetition))
    remote = not isinstance(executor, LocalExecutor)
    checkpoint_root = (out.resolve() if remote else out) / CHECKPOINTS
    tasks = [
        CaseTask(
            case=c,
            key=keys[c],
            run_id=run_id,
            device=plan.device,
            dtype=plan.dtype,
            budget_seconds=plan.budget,
            salt=salt,
            command=command_line,
            checkpoints=str(checkpoint_root / keys[c]),
            torch_threads=executor.torch_threads,
        )
        for c in todo
    ]

    ran = 0
    interrupted = finished = False
    try:
        for outcome in executor.run(tasks, host, events):
            commit_outcome(out, outcome)
            ran += 1
            if on_outcome is not None:
                on_outcome(outcome)
        finished = True
    except KeyboardInterrupt:
        interrupted = True
        raise
    except BaseException as exc:
        session.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        session.executor = executor.describe()  # after the run: a cluster's address and size
        executor.close()
        manifest.scoring.salt = salt  # revealed once no solver of this session can run any more
        manifest.interrupted = interrupted
        session.ran, session.interrupted, session.finished = ran, interrupted, utc_now()
        run.write_manifest(manifest)
        run.consolidate()
        manifest.completed = utc_now() if finished else None
        run.write_manifest(manifest)

    records = store.read_case_records(out)
    return RunResult(out, run_id, records, ran, reused, list(plan.skipped), interrupted)
