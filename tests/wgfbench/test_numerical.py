"""Numerical references: storage with provenance, hash verification, lazy loading, the law of a grid
and of stored particles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wgfbench.grid import Grid
from wgfbench.numerical import (
    GridData,
    GridPath,
    ParticleData,
    ParticlePath,
    ReferenceDataError,
    content_hash,
    load_grid_data,
    load_particle_data,
    max_difference,
    particle_content_hash,
    particle_max_difference,
    provenance,
    save_grid_data,
    save_particle_data,
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


# ----------------------------------------------------------------------------------------------
# ParticlePath


def particle_build(n: int = 5000, seed: int = 0) -> ParticleData:
    """A deterministic 'particle solver': N(0, (1 + t) I) draws, stored as float32."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=gen, dtype=torch.float64).numpy()
    x = np.stack([z * math.sqrt(1 + t) for t in TIMES]).astype(np.float32)
    return ParticleData(TIMES.copy(), x, provenance("gaussian-particles", {"n": n}, "test"))


def test_particle_round_trip_keeps_float32_data_hash_and_provenance(tmp_path):
    data = particle_build()
    path = tmp_path / "particles.npz"
    digest = save_particle_data(path, data)
    loaded = load_particle_data(path, digest)
    assert loaded.x.dtype == np.float32 and np.array_equal(loaded.x, data.x)
    assert np.array_equal(loaded.times, TIMES)
    assert (
        loaded.provenance["content_sha256"] == digest and loaded.provenance["solver"] == "gaussian-particles"
    )
    # the hash is of the stored (float32) bytes: widening the same values changes it
    assert particle_content_hash(data.times, data.x.astype(np.float64)) != digest
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"times", "x", "provenance"}


def test_particle_data_tampered_missing_or_malformed_is_a_clear_error(tmp_path):
    data = particle_build(100)
    path = tmp_path / "particles.npz"
    digest = save_particle_data(path, data)
    x = data.x.copy()
    x[1, 0, 0] += 1e-3
    save_particle_data(path, ParticleData(data.times, x, data.provenance))
    with pytest.raises(ReferenceDataError, match="content hash"):
        load_particle_data(path, digest)
    with pytest.raises(ReferenceDataError, match="not found"):
        load_particle_data(tmp_path / "missing.npz", digest)
    with pytest.raises(ReferenceDataError, match="do not fit"):
        ParticleData(TIMES[:2], data.x, {})
    with pytest.raises(ReferenceDataError, match="float32 or float64"):
        ParticleData(TIMES, data.x.astype(np.float16), {})


def test_particle_path_is_lazy_verifies_its_hash_and_checks_the_dimension(tmp_path):
    path = tmp_path / "particles.npz"
    reference = ParticlePath(2, path, sha256="0" * 64, build=particle_build)  # nothing read yet
    assert reference.kind == "numerical" and not reference.has_density
    digest = save_particle_data(path, particle_build(100))
    with pytest.raises(ReferenceDataError, match="content hash"):
        reference.sample(0.0, 1, torch.Generator())
    assert ParticlePath(2, path, digest, particle_build).n_particles == 100
    with pytest.raises(ReferenceDataError, match="expected 3-D"):
        _ = ParticlePath(3, path, digest, particle_build).data


def test_particle_path_law_is_the_stored_empirical_measure(tmp_path):
    path = tmp_path / "particles.npz"
    data = particle_build(5000)
    reference = ParticlePath(2, path, save_particle_data(path, data), particle_build)
    assert reference.times == tuple(TIMES)
    stored = torch.from_numpy(data.x[2].astype(np.float64))
    assert torch.equal(reference.particles(1.0), stored)
    # mean and covariance of the stored particles (1/N normalisation), close to those of N(0, 2I)
    centred = stored - stored.mean(0)
    assert torch.allclose(reference.mean(1.0), stored.mean(0), atol=1e-12)
    assert torch.allclose(reference.cov(1.0), centred.T @ centred / 5000, atol=1e-12)
    assert torch.allclose(reference.cov(1.0), 2 * torch.eye(2, dtype=torch.float64), atol=0.15)
    # n <= N: distinct stored particles; n > N: with replacement; reproducible per generator
    x = reference.sample(1.0, 4000, torch.Generator().manual_seed(2))
    assert x.dtype == torch.float64 and torch.unique(x, dim=0).shape[0] == 4000
    rows = {tuple(r) for r in stored.tolist()}
    assert all(tuple(r) in rows for r in x.tolist())
    assert torch.equal(x, reference.sample(1.0, 4000, torch.Generator().manual_seed(2)))
    big = reference.sample(1.0, 12_000, torch.Generator().manual_seed(3))
    assert big.shape == (12_000, 2) and torch.unique(big, dim=0).shape[0] <= 5000
    with pytest.raises(KeyError, match="stores t"):
        reference.sample(0.7, 1, torch.Generator())


def test_particle_rebuilds_reproduce_and_differences_are_reported():
    assert particle_max_difference(particle_build(50), particle_build(50)) == 0.0
    assert particle_max_difference(particle_build(50), particle_build(40)) == math.inf
    assert 0 < particle_max_difference(particle_build(50), particle_build(50, seed=1)) < math.inf
