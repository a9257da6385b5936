"""The run directory: how a campaign is written to disk and read back (no pickle anywhere).

Layout of a run directory::

    run_dir/
        manifest.json                     plan, campaign, sessions, versions, machine (see runner)
        parts/<case_key>.results.parquet  the case's rows in the public long schema, written first
        parts/<case_key>.case.json        the case record: its existence commits the case
        artifacts/<case_key>/final.npz    the final snapshot resampled to the tier's n_eval
        artifacts/<case_key>/...          files the solver wrote to ctx.artifacts (sent by its worker)
        checkpoints/<case_key>/           per-step checkpoints of an unfinished large-tier case
        .lock                             held (flock) by the campaign writing the directory
        cases.parquet                     one row per case      } consolidated from parts at the end
        results.parquet                   public long format    } of a run, readable before that

Every file is written atomically (a temporary file in the same directory, flushed, fsynced and
moved into place with :func:`os.replace`; created with mode ``0o666`` less the umask, like any
file the user writes), and a case's results part is written before its ``case.json``, so a killed
run loses at most the case in flight and never leaves a half-written file behind. Readers prefer
the consolidated files and fall back to the parts when the run is still in progress (or was killed
before consolidating): a part newer than ``cases.parquet`` means the consolidated files are stale.

Damaged files (truncated, foreign, hand-edited) raise :class:`StoreError` naming the file, what is
wrong with it and what to do; nothing reads them as empty or all-null tables:

* a damaged ``cases.parquet`` or ``results.parquet`` is rebuilt from the parts by
  :func:`consolidate`, so while the parts are there readers fall back to them with a warning;
* a damaged part is an error for readers; for ``--resume`` (:func:`committed_cases`) a case whose
  ``case.json``, or whose results part beside an ok ``case.json``, is damaged is not committed: it
  is skipped with a warning and reruns, which rewrites both files;
* a damaged ``manifest.json`` or final snapshot cannot be rebuilt: the error says so.

Runs of :data:`READABLE_SCHEMA_VERSIONS` are read; a ``cases.parquet`` or case record of an older
version that lacks columns added since gets nulls there (only :data:`CASES_KEY_COLUMNS` are required).

The results table is the **public** long schema ``run_id, solver, problem, seed, t, step, metric,
value`` (exactly these columns in this order; ``t`` float64, NaN for per-case rows such as costs;
``step`` int64, −1 for rows not tied to a logged step; ``value`` float64).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wgfbench.errors import WgfbenchError

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = frozenset({2, SCHEMA_VERSION})
"""Schema versions the readers accept: the one written and 2, the version of the committed runs in
``leaderboards/`` (their cases lack any column added since, which reads as nulls)."""
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
        ("git_revision", pa.string()),
        ("git_dirty", pa.bool_()),
        ("code_hash", pa.string()),
        ("worker", pa.string()),
    ]
)
"""One row per case; ``seed`` is the repetition index, ``solver_seed`` the seed the solver got,
``role`` the solver's leaderboard role (solver, baseline, calibration), ``score_salt_sha256`` the
digest of the scoring salt its scores were drawn with (the salt is in the manifest), and (schema 3)
``git_revision``/``git_dirty`` of the code the case's process ran, the ``code_hash`` of its
solver's plugin and the ``worker`` (host:pid) that ran it. The case's ``parts/<key>.case.json``
holds more: package versions, machine, resolved settings, the solver's ``info``, the traceback."""

CASES_COLUMNS: tuple[str, ...] = tuple(CASES_SCHEMA.names)

CASES_KEY_COLUMNS: tuple[str, ...] = ("case_key", "solver", "problem", "seed", "status")
"""The columns a cases table (or case record) cannot lack; the other :data:`CASES_COLUMNS` may be
missing from a run written before they were added, and read as nulls."""


class StoreError(WgfbenchError):
    """A run directory that is missing, incomplete, damaged or of an unknown schema; the message
    names the file and says what to do."""


# ----------------------------------------------------------------------------------------------
# Atomic writers


def _create_temporary(path: Path) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` beside ``path``, created exclusively with mode
    ``0o666`` so that the kernel applies the umask (and any default ACL) as for any file the user
    writes: ``tempfile.mkstemp`` would make every run file 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``; moved onto ``path`` with ``os.replace`` on success and
    removed on failure, so ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a case's artefact files, sent back by its worker)."""
    with _atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _resume_hint(run_dir: Path) -> str:
    """The advice to rerun the run with ``--resume``, quoting its command from the manifest when
    it can be read (that command selects the same cases again)."""
    try:
        command = json.loads(manifest_path(run_dir).read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        command = None
    if not isinstance(command, str) or not command.startswith("wgfbench run"):
        return f"rerun the run's command with --resume --out {run_dir}"
    has_out = any(option in command.split() for option in ("--out", "-o"))
    return f"rerun `{command} --resume{'' if has_out else f' --out {run_dir}'}`"


def _rerun_case_hint(path: Path) -> str:
    """What to do about a damaged file of one case (``parts/<key>.*`` or ``artifacts/<key>/*``):
    ``--resume`` reruns a case whose part is damaged (see :func:`committed_cases`); a damaged
    artefact needs the case's ``case.json`` deleted first."""
    if path.parent.name == PARTS:
        run_dir = path.parent.parent
        return f"{_resume_hint(run_dir)} to recompute that case"
    if path.parent.parent.name == ARTIFACTS:
        run_dir, key = path.parent.parent.parent, path.parent.name
        return f"delete {case_json_path(run_dir, key)} and {_resume_hint(run_dir)} to recompute that case"
    return "replace it with a copy written by wgfbench"


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`write_npz_atomic` (never unpickles); a missing,
    truncated or foreign file raises :class:`StoreError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path} is missing; {_rerun_case_hint(path)}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise StoreError(
            f"{path} is not a readable .npz ({_first_line(exc)}): it is damaged or was not written "
            f"by wgfbench; {_rerun_case_hint(path)}"
        ) from None


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


def _read_json_object(path: Path, what: str, hint: str) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`StoreError` naming the file when it cannot be read,
    is not UTF-8 JSON, or holds something else than an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            f"it is not {what} or is damaged; {hint}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} cannot be read ({_first_line(exc)}); {hint}") from None
    if not isinstance(value, dict):
        raise StoreError(
            f"{path} holds a JSON {type(value).__name__}, not an object: it is not {what}; {hint}"
        )
    return value


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest; raises :class:`StoreError` when ``run_dir`` is not a run directory,
    its manifest is damaged, or of a schema version this wgfbench does not read."""
    path = manifest_path(run_dir)
    if not path.is_file():
        raise StoreError(f"{run_dir} is not a wgfbench run directory (no {MANIFEST})")
    hint = (
        "the plan and scoring salt it held cannot be rebuilt: restore it from a copy, "
        "or start a new run with another --out"
    )
    manifest = _read_json_object(path, "a wgfbench manifest", hint)
    version = manifest.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in sorted(READABLE_SCHEMA_VERSIONS))
        if "schema_version" not in manifest:
            raise StoreError(f"{path} has no schema_version: it is not a wgfbench manifest; {hint}")
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        advice = "it was written by a newer wgfbench: upgrade to read it" if newer else "it cannot be read"
        raise StoreError(
            f"{run_dir}: schema_version {version!r} is not one this wgfbench reads ({readable}); {advice}"
        )
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


def read_case_record(path: Path) -> dict[str, Any]:
    """One ``parts/<key>.case.json``; :class:`StoreError` naming it when it is not a JSON object
    with the :data:`CASES_KEY_COLUMNS` and its own key."""
    record = _read_json_object(path, "a wgfbench case record", _rerun_case_hint(path))
    missing = [c for c in CASES_KEY_COLUMNS if c not in record]
    if missing:
        raise StoreError(
            f"{path} lacks the fields {missing} of a case record: it is damaged; {_rerun_case_hint(path)}"
        )
    if f"{record['case_key']}{CASE_SUFFIX}" != path.name:
        raise StoreError(
            f"{path} holds the record of another case ({record['case_key']!r}): it is damaged; "
            f"{_rerun_case_hint(path)}"
        )
    return record


def _check_results_part(path: Path) -> None:
    """:class:`StoreError` when the results part ``path`` is missing, not Parquet, or lacks
    columns of the public schema (its footer is read, not its rows)."""
    if not path.is_file():
        raise StoreError(f"{path} is missing beside its ok case.json; {_rerun_case_hint(path)}")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreError(
            f"{path} is not a readable Parquet file ({_first_line(exc)}): it is damaged; "
            f"{_rerun_case_hint(path)}"
        ) from None
    missing = [c for c in RESULTS_COLUMNS if c not in names]
    if missing:
        raise StoreError(
            f"{path} is not a wgfbench results table (missing columns {missing}): it is damaged; "
            f"{_rerun_case_hint(path)}"
        )


def committed_cases(run_dir: Path, *, damaged: str = "skip") -> dict[str, dict[str, Any]]:
    """Every committed case (those with a readable ``case.json``), by case key.

    A case whose ``case.json`` is damaged, or whose results part is damaged beside an ok record,
    is not committed: with ``damaged="skip"`` (what ``--resume`` uses) it is left out with a
    warning, so that the case reruns and both files are rewritten; with ``damaged="raise"`` (the
    readers) it raises :class:`StoreError` naming the file.
    """
    if damaged not in ("skip", "raise"):
        raise ValueError(f"damaged must be 'skip' or 'raise', got {damaged!r}")
    parts = Path(run_dir) / PARTS
    if not parts.is_dir():
        return {}
    out = {}
    for path in sorted(parts.glob(f"*{CASE_SUFFIX}")):
        try:
            record = read_case_record(path)
            if record["status"] == "ok":
                _check_results_part(results_part_path(run_dir, record["case_key"]))
        except StoreError as exc:
            if damaged == "raise":
                raise
            warnings.warn(f"{exc} (the case counts as not run: --resume reruns it)", stacklevel=2)
            continue
        out[record["case_key"]] = record
    return out


def _plan_order(run_dir: Path) -> dict[str, int]:
    try:
        cases = read_manifest(run_dir).get("plan", {}).get("cases", [])
        return {c["key"]: i for i, c in enumerate(cases)}
    except (StoreError, AttributeError, KeyError, TypeError):  # no plan order: sorted by key
        return {}


def _ordered_records(run_dir: Path) -> list[dict[str, Any]]:
    records = committed_cases(run_dir, damaged="raise")
    order = _plan_order(run_dir)
    return sorted(records.values(), key=lambda r: (order.get(r["case_key"], len(order)), r["case_key"]))


def _cases_from_parts(run_dir: Path) -> pd.DataFrame:
    return cases_frame(_ordered_records(run_dir))


def _read_parquet(path: Path, schema: pa.Schema, required: tuple[str, ...], what: str, hint: str) -> pa.Table:
    """``path`` as a table of exactly ``schema``: columns of ``schema`` it lacks, other than
    ``required``, are filled with nulls, and others are dropped. :class:`StoreError` naming the
    file when it is not Parquet, lacks a required column or has a column of another type."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreError(f"{path} is not a readable Parquet file ({_first_line(exc)}); {hint}") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise StoreError(
            f"{path} is not a wgfbench {what} table (missing columns {missing}): it was not written "
            f"by wgfbench or is damaged; {hint}"
        )
    columns = []
    for fld in schema:
        if fld.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, fld.type))
            continue
        column = table.column(fld.name)
        try:
            columns.append(column.cast(fld.type))
        except (pa.ArrowException, ValueError):
            raise StoreError(
                f"{path}: column {fld.name!r} holds {column.type}, not {fld.type}: it is not a wgfbench "
                f"{what} table or is damaged; {hint}"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def _results_from_parts(run_dir: Path) -> pd.DataFrame:
    frames = []
    for record in _ordered_records(run_dir):
        # Only an ok case contributes rows: a results part beside a failed record can be the
        # leftover of a retry killed before its case.json was replaced.
        path = results_part_path(run_dir, record["case_key"])
        if record["status"] == "ok" and path.is_file():
            hint = _rerun_case_hint(path)
            frames.append(_read_parquet(path, RESULTS_SCHEMA, RESULTS_COLUMNS, "results", hint))
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


def _read_consolidated(
    run_dir: Path, name: str, schema: pa.Schema, required: tuple[str, ...], what: str
) -> pd.DataFrame | None:
    """The consolidated ``name`` when it is current and readable; ``None`` when the parts must be
    read instead (not consolidated yet, or damaged while the parts that rebuild it are there, which
    is warned about). Damaged with no parts to fall back to raises :class:`StoreError`."""
    path = run_dir / name
    has_parts = (run_dir / PARTS).is_dir()
    if not is_consolidated(run_dir):
        missing = [run_dir / f for f in (CASES, RESULTS) if not (run_dir / f).is_file()]
        if not has_parts and len(missing) == 1:  # a consolidated run lost one of its two files
            raise StoreError(
                f"{missing[0]} is missing and the run has no {PARTS}/ to rebuild it from: "
                "restore it from a copy, or rerun the campaign"
            )
        return None
    if has_parts:
        hint = f"{_resume_hint(run_dir)} to rebuild it from the parts"
    else:
        hint = f"the run has no {PARTS}/ to rebuild it from: restore it from a copy"
    try:
        return _read_parquet(path, schema, required, what, hint).to_pandas()
    except StoreError as exc:
        if not has_parts:
            raise
        warnings.warn(f"{exc} — reading the run's parts instead", stacklevel=3)
        return None


def read_cases(run_dir: Path) -> pd.DataFrame:
    """One row per case (:data:`CASES_COLUMNS`), from ``cases.parquet`` or, before consolidation
    (or when it is damaged), from the committed parts."""
    run_dir = Path(run_dir)
    read_manifest(run_dir)
    cases = _read_consolidated(run_dir, CASES, CASES_SCHEMA, CASES_KEY_COLUMNS, "cases")
    return cases if cases is not None else _cases_from_parts(run_dir)


def read_results(run_dir: Path) -> pd.DataFrame:
    """The long results table (public schema) from ``results.parquet`` or, before consolidation
    (or when it is damaged), from the committed parts."""
    run_dir = Path(run_dir)
    read_manifest(run_dir)
    results = _read_consolidated(run_dir, RESULTS, RESULTS_SCHEMA, RESULTS_COLUMNS, "results")
    return results if results is not None else _results_from_parts(run_dir)


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
