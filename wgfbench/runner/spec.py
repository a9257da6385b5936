"""Campaign files: a whole campaign as one reviewed TOML file, ``wgfbench run FILE``.

Example (``docs/campaigns.md`` has the full reference)::

    solvers = ["langevin", "fv-jko", "deep-jko"]
    problems = ["fokker-planck/*", "porous-medium/barenblatt-2d-m2"]
    seeds = 3
    tiers = ["quick"]          # or tier = "quick"; several tiers run into out/<tier>/
    base_seed = 0
    device = "cpu"             # or "cuda"
    dtype = "float64"
    budget = 180               # CPU seconds per case (default: the tier's)
    out = "runs/fp-quick"      # relative to the working directory

    [set.langevin]             # config overrides, as --set langevin.n_particles=4000
    n_particles = 4000

    [executor]
    kind = "dask"              # "local" (default), "dask" or "slurm"
    workers = 2                # a LocalCluster of 2 worker processes ...
    # scheduler = "tcp://10.0.0.1:8786"   # ... or an existing scheduler

    # [executor.slurm]         # with kind = "slurm": batch jobs of Dask workers (dask-jobqueue)
    # jobs = 4
    # cores = 16
    # memory = "64GiB"

Every field is validated (unknown keys included) before anything runs, and an error names the
file and the field. The same model describes a command-line campaign, and a run's manifest stores
it, so ``wgfbench rerun RUN`` repeats the campaign.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic

from wgfbench.context import TIERS
from wgfbench.errors import ConfigError
from wgfbench.runner.jobqueue import SlurmSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ExecutorSpec(pydantic.BaseModel):
    """Where the cases run: ``local`` (one at a time, each in its own process), ``dask``
    (``workers`` local worker processes, or an existing ``scheduler``) or ``slurm`` (batch jobs of
    Dask workers submitted through dask-jobqueue, described by the ``slurm`` table)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "dask", "slurm"] = "local"
    workers: pydantic.PositiveInt | None = None
    scheduler: str | None = None
    slurm: SlurmSpec | None = None

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ExecutorSpec:
        if self.slurm is not None and self.kind != "slurm":
            raise ValueError("a slurm table needs kind = 'slurm'")
        if self.kind == "slurm" and (self.workers is not None or self.scheduler is not None):
            raise ValueError(
                "kind = 'slurm' sizes its cluster with the slurm table, not workers or scheduler"
            )
        if self.kind == "local" and self.scheduler is not None:
            raise ValueError("a scheduler address needs kind = 'dask'")
        if self.kind == "local" and self.workers not in (None, 1):
            raise ValueError("the local executor runs one case at a time; use kind = 'dask' for workers > 1")
        if self.scheduler is not None and self.workers is not None:
            raise ValueError(
                "give either workers (a local Dask cluster) or scheduler (an existing one), not both"
            )
        return self


class CampaignSpec(pydantic.BaseModel):
    """A campaign: solvers × problems × seeds at one or more tiers, with overrides and executor."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    solvers: list[str] = pydantic.Field(min_length=1)
    problems: list[str] = pydantic.Field(min_length=1)
    seeds: pydantic.PositiveInt = 1
    tiers: list[str] = pydantic.Field(default_factory=lambda: ["smoke"], min_length=1)
    base_seed: pydantic.NonNegativeInt = 0
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float64"
    budget: pydantic.PositiveFloat | None = None
    overrides: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict, alias="set")
    executor: ExecutorSpec = ExecutorSpec()
    out: str | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _tier_alias(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "tier" in data:
            data = dict(data)
            if "tiers" in data:
                raise ValueError("give tier or tiers, not both")
            tier = data.pop("tier")
            data["tiers"] = [tier] if isinstance(tier, str) else tier
        return data

    @pydantic.field_validator("tiers")
    @classmethod
    def _known_tiers(cls, tiers: list[str]) -> list[str]:
        for tier in tiers:
            if tier not in TIERS:
                close = difflib.get_close_matches(tier, list(TIERS), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown tier {tier!r} (known: {', '.join(TIERS)}){hint}")
        if len(set(tiers)) != len(tiers):
            raise ValueError("a tier is listed twice")
        return tiers

    @pydantic.field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        return device

    @pydantic.field_validator("solvers", "problems")
    @classmethod
    def _patterns(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.strip():
                raise ValueError("an empty name")
        return names

    def to_plain(self) -> dict[str, Any]:
        """The spec as plain JSON-able data (what a manifest stores), ``set`` as in a file."""
        return self.model_dump(mode="json", by_alias=True)


def _field_errors(source: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            known = [*sorted(CampaignSpec.model_fields), "set", "tier"]
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            message = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
        elif err["type"] != "missing" and "input" in err:
            message += f" (got {err['input']!r})"
        parts.append(f"field {loc!r}: {message}")
    return f"{source}: " + "; ".join(parts)


def parse_campaign(data: Mapping[str, Any], source: str = "campaign") -> CampaignSpec:
    """Validate campaign data; a :class:`ConfigError` names ``source`` and every bad field."""
    try:
        return CampaignSpec.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise ConfigError(_field_errors(source, exc)) from None


def load_campaign(path: Path) -> CampaignSpec:
    """Read and validate a TOML campaign file (errors name the file, the line or the field)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"campaign file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read campaign file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_campaign(data, str(path))


def tier_out(spec: CampaignSpec, tier: str, out: Path) -> Path:
    """The run directory of ``tier``: ``out`` itself for a one-tier campaign, else ``out/<tier>``."""
    return out if len(spec.tiers) == 1 else out / tier
