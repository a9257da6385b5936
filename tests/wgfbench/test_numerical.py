"""Numerical references: storage with provenance, hash verification, lazy loading, the law of a grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wgfbench.grid import Grid
from wgfbench.numerical import (
    GridData,
    GridPath,
    ReferenceDataError,
    content_hash,
    load_grid_data,
    max_difference,
    provenance,
    save_grid_data,
)
from wgfbench.problem import Box

BOX = Box((-8.0, -8.0), (8.0, 8.0))
TIMES = np.array([0.0, 0.5, 1.0])


def gaussian_build(n: int = 64) -> GridData:
    """A deterministic 'solver': N(0, (1 + t) I) discretised on an n² grid."""
    grid = Grid.with_cells(BOX, n)
    rho = np.stack([grid.discretise(lambda x, s=1 + t: -0.5 * (x**2).sum(1) / s).numpy() for t in TIMES])
    return GridData(TIMES.copy(), rho, BOX, provenance("gaussian", {"n": n}, "test"))


def test_round_trip_keeps_data_and_provenance(tmp_path):
    data = gaussian_build()
    digest = save_grid_data(tmp_path / "ref.npz", data)
    assert digest == content_hash(data.times, data.rho, data.box)
    loaded = load_grid_data(tmp_path / "ref.npz", digest)
    assert max_difference(loaded, data) == 0.0
    assert loaded.provenance["solver"] == "gaussian" and loaded.provenance["content_sha256"] == digest
    assert {"python", "torch", "numpy", "scipy", "wgfbench"} <= set(loaded.provenance["versions"])
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as npz:  # no pickled objects inside
        assert set(npz.files) == {"times", "rho", "low", "high", "provenance"}


def test_tampered_or_missing_data_is_a_clear_error(tmp_path):
    data = gaussian_build(16)
    digest = save_grid_data(tmp_path / "ref.npz", data)
    tampered = GridData(data.times, data.rho * (1 + 1e-15), data.box, data.provenance)
    save_grid_data(tmp_path / "bad.npz", tampered)
    with pytest.raises(ReferenceDataError, match="content hash"):
        load_grid_data(tmp_path / "bad.npz", digest)
    with pytest.raises(ReferenceDataError, match="not found"):
        load_grid_data(tmp_path / "nowhere.npz", digest)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ReferenceDataError, match="malformed"):
        load_grid_data(tmp_path / "junk.npz", digest)


def test_grid_path_is_lazy_and_verifies_its_hash(tmp_path):
    path = tmp_path / "ref.npz"
    reference = GridPath(2, path, sha256="0" * 64, build=gaussian_build)
    assert reference.kind == "numerical"  # constructing reads nothing: the file does not exist yet
    save_grid_data(path, gaussian_build(16))
    with pytest.raises(ReferenceDataError, match="content hash"):
        reference.sample(0.5, 10, torch.Generator().manual_seed(0))


def test_grid_path_law_matches_the_discretised_gaussian(tmp_path):
    path = tmp_path / "ref.npz"
    reference = GridPath(2, path, sha256=save_grid_data(path, gaussian_build(128)), build=gaussian_build)
    assert reference.times == tuple(TIMES)
    cov = reference.cov(1.0)
    assert torch.allclose(reference.mean(1.0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(cov, 2.0 * torch.eye(2, dtype=torch.float64), atol=2e-3)
    x = reference.sample(1.0, 200_000, torch.Generator().manual_seed(1))
    assert torch.allclose(torch.cov(x.T), cov, atol=0.03)
    inside = torch.tensor([[0.0625, -0.0625], [1.0625, 1.5625]], dtype=torch.float64)  # cell centres
    exact = -0.5 * (inside**2).sum(1) / 2.0 - math.log(2 * math.pi * 2.0)
    assert torch.allclose(reference.log_density(1.0, inside), exact, atol=1e-3)
    assert reference.log_density(1.0, torch.tensor([[9.0, 0.0]], dtype=torch.float64)).item() == -math.inf
    with pytest.raises(KeyError, match="stores t"):
        reference.sample(0.7, 1, torch.Generator())


def test_rebuilds_reproduce_and_differences_are_reported():
    assert max_difference(gaussian_build(32), gaussian_build(32)) == 0.0
    assert max_difference(gaussian_build(32), gaussian_build(16)) == math.inf
