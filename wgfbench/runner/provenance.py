"""Provenance: what a case's numbers depend on (its key) and where they came from (its record).

The **case key** is a 64-bit BLAKE2b digest of everything that determines a case's numbers:

* the problem's name and version, and the version and code hash of the plugin providing it;
* the solver's name, its validated config *and the settings it resolves for this problem and
  tier* (:meth:`wgfbench.Solver.resolved_settings`: per-family tables such as deep-jko's are
  resolved there, so editing a table entry reruns exactly the cases it affects);
* the version and code hash of the solver's plugin: the SHA-256 of every ``.py`` file of the
  plugin's entry-point module (of the whole package when it is one) and of the module defining
  the solver class, so an edited solver is rerun even without a version bump;
* the tier, the repetition and the base seed.

wgfbench's own code is not in the key (a core change would rerun every case of every run); each
case records the git revision and package versions it ran with instead, and the scorer's version
is in the manifest.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import wgfbench
from wgfbench.host import Host
from wgfbench.problem import Problem, solver_scope
from wgfbench.solver import Solver, problem_as_seen_by

KEY_VERSION = 2
"""Bumped whenever what enters the case key changes (keys of older runs then never match)."""


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def hex_key(*parts: object) -> str:
    """A 64-bit BLAKE2b hex digest of ``parts`` joined by a unit separator."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------------------------
# Code hashes


def _module_files(module_name: str) -> list[Path]:
    """The ``.py`` files of a module: all of a package's (recursively), or the module's file."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        module = sys.modules.get(module_name)
        origin = getattr(module, "__file__", None)
        return [Path(origin)] if origin else []
    if spec.submodule_search_locations:
        files: list[Path] = []
        for root in spec.submodule_search_locations:
            files.extend(sorted(Path(root).rglob("*.py")))
        return files
    return [Path(spec.origin)] if spec.origin and spec.origin not in ("built-in", "frozen") else []


@functools.cache
def _files_digest(files: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        try:
            data = path.read_bytes()
        except OSError:
            data = b"<unreadable>"
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def code_hash(*objects: Any) -> str:
    """A hash of the source files behind ``objects`` (module names, modules, classes or instances):
    a package contributes all of its ``.py`` files, a module its file, a class its module's file.
    Computed once per process and file set: the code a process runs is the code it imported."""
    files: list[Path] = []
    for obj in objects:
        if isinstance(obj, str):
            files.extend(_module_files(obj.partition(":")[0]))
            continue
        target = obj if inspect.ismodule(obj) or inspect.isclass(obj) else type(obj)
        try:
            source = inspect.getsourcefile(target)
        except TypeError:
            source = None
        if source:
            files.append(Path(source))
    return _files_digest(tuple(files))


def plugin_code_hash(host: Host, registry: str, name: str, item: Any) -> str:
    """The code hash of the plugin that registered ``name`` in ``host.<registry>`` (its entry-point
    module, whole package included) together with ``item``'s own defining module."""
    info = getattr(host, registry).entry(name).plugin
    return code_hash(info.module, item)


# ----------------------------------------------------------------------------------------------
# The case key


def resolved_settings(solver: Solver, problem: Problem) -> dict[str, Any]:
    """The solver's settings for ``problem`` at its tier (:meth:`Solver.resolved_settings`), as a
    JSON-able dict; what a case records and its key hashes."""
    with solver_scope(solver.role):
        settings = solver.resolved_settings(problem_as_seen_by(solver, problem))
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = dataclasses.asdict(settings)
    return json.loads(json.dumps(dict(settings), sort_keys=True, default=str))


def case_key(case: Any, host: Host) -> str:
    """The key of ``case`` (a :class:`wgfbench.runner.plan.Case`): see the module docstring."""
    problem = wgfbench.get_problem(case.problem, host)
    solver = case.build_solver(host)
    solver_entry = host.solvers.entry(case.solver)
    problem_entry = host.problems.entry(case.problem)
    try:
        settings = json.dumps(resolved_settings(solver, problem), sort_keys=True)
    except Exception as exc:  # the case will fail when it runs; its key still must be stable
        settings = f"unresolved: {type(exc).__name__}: {exc}"
    return hex_key(
        "case",
        KEY_VERSION,
        problem.name,
        problem.version,
        case.solver,
        solver.config.model_dump_json(),
        settings,
        case.tier,
        case.repetition,
        case.base_seed,
        f"{solver_entry.plugin.name}=={solver_entry.plugin.version}",
        plugin_code_hash(host, "solvers", case.solver, type(solver)),
        f"{problem_entry.plugin.name}=={problem_entry.plugin.version}",
        plugin_code_hash(host, "problems", case.problem, type(problem)),
    )


# ----------------------------------------------------------------------------------------------
# Where the numbers came from


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(path: Path | None = None) -> tuple[str | None, bool | None]:
    """``(HEAD revision, dirty)`` of the git checkout holding ``path`` (the wgfbench sources by
    default; dirty = tracked files changed); ``(None, None)`` outside a checkout."""
    path = path or Path(wgfbench.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return rev.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def git_revision(path: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the checkout holding ``path``, with ``+dirty`` when tracked files
    have changes; ``None`` when it is not a git checkout."""
    rev, dirty = git_state(path)
    return None if rev is None else rev + ("+dirty" if dirty else "")


@functools.cache
def process_git_state() -> tuple[str | None, bool | None]:
    """:func:`git_state` once per process: taken when a process first runs a case, it describes
    the code that process imported (later edits of the tree do not reach it)."""
    return git_state()


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """Hardware of this process's machine: CPU model and counts, torch threads, host, platform,
    and the CUDA device when ``device`` is one."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cuda_device": None,
    }
    if torch.device(device).type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda_version"] = torch.version.cuda
    return info


def versions(host: Host) -> dict[str, Any]:
    """Versions of python, torch, POT, numpy, scipy, pandas, pyarrow, wgfbench and every plugin."""
    import scipy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pot": _dist_version("pot"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "pyarrow": _dist_version("pyarrow"),
        "wgfbench": wgfbench.__version__,
        "plugins": {name: version for name, version in sorted(host.plugin_versions().items())},
    }


def case_provenance(host: Host, device: str) -> dict[str, Any]:
    """What a case records about the process that ran it: git revision and dirty flag of the code
    it imported, package and plugin versions, and the machine (``worker`` = host:pid)."""
    revision, dirty = process_git_state()
    return {
        "git_revision": revision,
        "git_dirty": dirty,
        "versions": versions(host),
        "machine": machine_info(device),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def plain(value: Any) -> Any:
    """``value`` made JSON-able for a case record: mappings and sequences recursively, tensors and
    arrays as lists, numpy scalars as Python numbers, anything else as its ``str``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return plain(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
