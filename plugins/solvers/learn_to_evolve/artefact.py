"""The trained operator as an artefact: safetensors weights plus a JSON description, no pickle.

A directory ``<key>/`` holds ``operator.safetensors`` (the network's ``state_dict``) and
``operator.json`` (the key's ingredients, the network's shape, the training log and the package
versions). The key hashes everything the trained weights depend on and nothing they do not:

* the problem family and its initial family's description (what the training densities are);
* the energy *as the operator sees it*: the potential on the operator's grid, the cell-averaged
  interaction kernel's FFT, the internal energy; the mobility; the box and grid shape;
* the step :math:`\\tau`, the representation (:data:`REPRESENTATION`) and every training field of
  the config (arm, schedule, network, seed).

So the problem's own initial condition, the case seed and the tier's output sizes do not enter:
one trained operator serves every seed and every run of the same configuration, and a later run
on another machine loads it from a copied directory (``operator_dir``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from wgfbench_plugins.solvers.learn_to_evolve.operator import JKOOperator

from wgfbench.grid import GridEnergy

REPRESENTATION = "lagrangian-cloud/bilinear-displacement/v1"
WEIGHTS, DESCRIPTION = "operator.safetensors", "operator.json"


def _tensor_digest(h: Any, tensor: torch.Tensor | None) -> None:
    if tensor is not None:
        tensor = tensor.detach().to("cpu")
        if tensor.is_complex():  # the kernel's FFT
            tensor = torch.view_as_real(tensor)
        h.update(tensor.to(torch.float64).contiguous().numpy().tobytes())


def operator_key(
    energy: GridEnergy, tau: float, family: str, members: str, mobility: str, fields: dict
) -> str:
    """The artefact key (module docstring): 24 hex digits of a BLAKE2b hash."""
    h = hashlib.blake2b(digest_size=12)
    grid = energy.grid
    h.update(
        json.dumps(
            {
                "representation": REPRESENTATION,
                "family": family,
                "initial_family": members,
                "mobility": mobility,
                "box": [grid.box.low, grid.box.high],
                "grid": list(grid.shape),
                "tau": repr(float(tau)),
                "internal": repr(energy.internal),
                "fields": fields,
            },
            sort_keys=True,
        ).encode()
    )
    _tensor_digest(h, energy.V)
    _tensor_digest(h, getattr(energy, "_kernel_fft", None) if energy.has_interaction else None)
    return h.hexdigest()


def save_operator(directory: Path, network: JKOOperator, description: dict[str, Any]) -> Path:
    """Write the artefact into ``directory`` atomically (a temporary sibling renamed into place);
    an existing artefact of the same key is left as it is (same key, same weights)."""
    directory = Path(directory)
    if (directory / DESCRIPTION).exists():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, tmp / WEIGHTS)
        (tmp / DESCRIPTION).write_text(json.dumps(description, indent=1, sort_keys=True, default=str))
        try:
            os.replace(tmp, directory)
        except OSError:  # another process won the race: theirs is the same operator
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_operator(directory: Path, key: str | None = None) -> tuple[JKOOperator, dict[str, Any]] | None:
    """The network and description stored in ``directory``, or ``None`` when there is none. With
    ``key``, an artefact of another key is an error (a copied directory of the wrong operator)."""
    directory = Path(directory)
    if not (directory / DESCRIPTION).exists() or not (directory / WEIGHTS).exists():
        return None
    description = json.loads((directory / DESCRIPTION).read_text())
    if key is not None and description.get("key") != key:
        raise ValueError(
            f"{directory} holds the operator {description.get('key')!r}, not {key!r}: it was trained "
            "for another problem, step or configuration"
        )
    network = JKOOperator(**description["network"])
    network.load_state_dict(load_file(directory / WEIGHTS))
    return network, description
