"""Campaigns: plan cases, run each isolated in a process of its own, record where numbers came from.

* :mod:`~wgfbench.runner.plan`: solvers × problems × repetitions at a tier (:func:`make_plan`),
  overrides, skipped pairs;
* :mod:`~wgfbench.runner.provenance`: case keys (resolved settings and plugin code hashed in),
  git revision, versions, machine;
* :mod:`~wgfbench.runner.execution`: one case in a child process with an enforced CPU-time budget,
  scored by its parent (:func:`execute_case`);
* :mod:`~wgfbench.runner.executors`: :class:`LocalExecutor` and :class:`DaskExecutor`;
* :mod:`~wgfbench.runner.campaign`: :func:`run_plan`, the run directory's lock, manifest and
  resume;
* :mod:`~wgfbench.runner.spec`: campaign files (TOML) and :class:`CampaignSpec`.

The progress display is the CLI's: the runner reports through :class:`CaseEvents` and
``on_outcome``.
"""

from wgfbench.runner.campaign import RunLock, RunResult, default_run_dir, run_plan
from wgfbench.runner.execution import COST_METRICS, CaseOutcome, CaseTask, PeakMemory, execute_case
from wgfbench.runner.executors import (
    EXECUTORS,
    CaseEvents,
    DaskExecutor,
    Executor,
    LocalExecutor,
    make_executor,
)
from wgfbench.runner.plan import (
    DTYPES,
    Case,
    FrozenMapping,
    Plan,
    Skip,
    make_plan,
    match_names,
    overrides_from_options,
    parse_override,
)
from wgfbench.runner.provenance import case_key, code_hash, git_revision, git_state, machine_info, versions
from wgfbench.runner.spec import CampaignSpec, ExecutorSpec, load_campaign, parse_campaign

__all__ = [
    "COST_METRICS",
    "DTYPES",
    "EXECUTORS",
    "CampaignSpec",
    "Case",
    "CaseEvents",
    "CaseOutcome",
    "CaseTask",
    "DaskExecutor",
    "Executor",
    "ExecutorSpec",
    "FrozenMapping",
    "LocalExecutor",
    "PeakMemory",
    "Plan",
    "RunLock",
    "RunResult",
    "Skip",
    "case_key",
    "code_hash",
    "default_run_dir",
    "execute_case",
    "git_revision",
    "git_state",
    "load_campaign",
    "machine_info",
    "make_executor",
    "make_plan",
    "match_names",
    "overrides_from_options",
    "parse_campaign",
    "parse_override",
    "run_plan",
    "versions",
]
