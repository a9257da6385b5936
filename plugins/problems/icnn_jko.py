r"""Anchor problems of Mokrov et al., "Large-scale Wasserstein gradient flows" (NeurIPS 2021): the
Ornstein–Uhlenbeck flows of their dimension study, on which ICNN-JKO is scored by SymKL.

What their public repository (``PetrMokrov/Large-Scale-Wasserstein-Gradient-Flows``) does, read
from the code (file paths relative to it):

* **Experiment** (``configs/ornstein_uhlenbeck_vary_dim.yml``, ``src/experiments/_ou.py``):
  dimensions d = 1, …, 12; initial law :math:`\mathcal N(0, I_d)` (``init_variance: 1.0``); horizon
  ``t_fin: 1.0``; JKO step ``dt: 0.05`` (20 steps); the law is scored every ``dt_estimation: 0.1``,
  i.e. at t = 0.1, 0.2, …, 1.0, on ``n_eval_samples: 8192``; ``exps_count: 15``.
* **Repetitions**: "15 experiments" are 15 *different random targets* per dimension, one ICNN-JKO
  run each. Experiment ``e`` in dimension ``d`` seeds Python's, NumPy's and torch's global RNGs with
  CRC-32 checksums of ``"abacaba@{d}@{e}" + "random"|"numpy"|"pytorch"``
  (``src/experiments/manual_random.py``, ``random_key: 'abacaba'``), then draws the target. The
  published number is, per d and t, the median over the 15 experiments of
  SymKL = ``kl_train + kl_target`` (``W2JKO_results.ipynb``, ``src/experiments/exp_file_manager.py``
  ``OU_vary_dim_EFM.loc``; plotted as the median of log10 SymKL with a 95 % band). The stored
  results (``results/ou_vary_dim/*ICNN_jko*.json``) give the medians at t = 0.9 in
  :data:`PUBLISHED_SYMKL_T09` (0.00405, 0.0083, 0.0103, 0.0191 for d = 2, 4, 8, 12).
* **Target** (``generate_target`` in ``src/experiments/_ou.py``): covariance
  ``sklearn.datasets.make_spd_matrix(d)`` on the global NumPy RNG, then mean
  ``np.random.randn(d)`` (scale 1). ``make_spd_matrix`` draws :math:`G\sim\mathcal U[0,1)^{d\times d}`,
  takes the SVD :math:`G^\top G = U\,\mathrm{diag}(s)\,V^\top`, draws :math:`r\sim\mathcal U[0,1)^d`
  and returns :math:`U(\mathbf 1\mathbf 1^\top + \mathrm{diag}(r))V^\top` — note that
  ``1.0 + np.diag(r)`` adds 1 to *every* entry, so :math:`\Sigma = ww^\top + U\mathrm{diag}(r)U^\top`,
  :math:`w = U\mathbf 1`: eigenvalues between :math:`\min r` and about :math:`d+1`.
* **Flow** (``src/ou.py``, ``create_ou_distrib_modeler(target, beta=1.0)``):
  :math:`dX = -A(X-b)\,dt + \sqrt{2/\beta}\,dW` with :math:`A=\Sigma^{-1}`, :math:`b` the target
  mean, :math:`\beta=1`; i.e. :math:`\partial_t\rho = \nabla\cdot(\rho\nabla V)+\Delta\rho`,
  :math:`V = \tfrac12(x-b)^\top\Sigma^{-1}(x-b)`, the flow of :math:`\mathrm{KL}(\rho\|\mathcal N(b,\Sigma))`
  (up to a constant, which is what the ICNN step minimises: ``src/utils.py``,
  ``train_diffusion_model``). The exact law at t (``OU_tNormal``) is the Gaussian of
  :class:`~wgfbench_plugins.problems.fokker_planck.OrnsteinUhlenbeck`.
* **SymKL**: for ICNN-JKO, ``kl_train`` = mean of :math:`\log p-\log q` on 8192 model samples
  (:math:`\log p` by change of variables through the learnt maps) and ``kl_target`` = mean of
  :math:`\log q-\log p` on 8192 fresh exact samples (:math:`\log p` there by inverting the maps);
  for the Euler–Maruyama baselines (``EM_sim_*``, step 1e-3, 1K/10K/50K particles) :math:`p` is a
  ``scipy.stats.gaussian_kde`` of the particles; for EM-ProxRec, density values carried by the
  particles with an importance estimate of the reverse term (``src/utils.py``,
  ``src/em_proxrec.py``). These estimators are :mod:`wgfbench.metrics.divergences`.

What is registered here: ``fokker-planck/ou-anchor-{d}d`` for d in :data:`ANCHOR_DIMS` = 2, 4, 8,
12 (a spread of the paper's 1…12, kept to four because several test suites run every registered
problem; :func:`make_ou_anchor` builds any d = 1…12 and any of the 15 repetitions). Each problem
is the paper's experiment 0 in that dimension: target from :func:`paper_target` (the paper's seed
and construction, on a private ``numpy.random.RandomState``, never the global RNG),
:math:`\rho_0=\mathcal N(0,I)`, times :data:`ANCHOR_TIMES` (0.9 is the paper's headline time, 1.0
its horizon), ``dt`` = 0.05, the exact
Gaussian reference at every time (``"pde"``), exact JKO iterates of step τ for this non-diagonal
:math:`A` (``"jko"``, :class:`GaussianJKOIterates`), ``references["stationary"]`` the target, primary
metric ``bures_w2`` and the random-Gaussian initial family of the other OU problems.

One deliberate difference: the singular vectors of :math:`G^\top G` are unique only up to sign,
and :math:`ww^\top` depends on those signs, which LAPACK builds may choose differently.
:func:`paper_target` fixes them (largest-magnitude entry of each column positive) so the problem is
the same on every platform; ``lapack_signs=True`` keeps the signs ``scipy.linalg.svd`` returns,
which is what ``make_spd_matrix`` itself computes on this machine. The paper's own realisations
were never published, so neither choice can be checked against them; what is reproduced is the
distribution of targets and the seeding.

Reading the published numbers (measured here on the paper's 15 targets per d, CPU, float64):

* the JKO time discretisation alone (exact iterates, τ = 0.05, vs the exact law at t = 0.9) has
  median SymKL 0.00024, 0.00057, 0.0021, 0.0026 for d = 2, 4, 8, 12: 6–20 % of the ICNN-JKO
  medians;
* the KDE protocol of the EM baselines scores *exact* samples of the law at t = 0.9 at 0.05–0.07
  (d = 2, 1000 points), 0.013–0.017 (d = 2, 10 000), 1.7 (d = 8, 10 000), 5.2–5.3 (d = 12, 1000) and
  4.3 (d = 12, 10 000): the paper's EM medians (0.061, 0.017, 1.69, 5.26, 4.34) are the KDE's bias,
  not Euler–Maruyama's error;
* a Gaussian fitted to 8192 exact samples scores about (d + d(d+1)/2)/8192 = 0.0006 (d = 2) to
  0.011 (d = 12), the same order as the ICNN-JKO medians in high d;
* the slowest mode relaxes at rate :math:`1/\lambda_{\max}(\Sigma)\approx 1/(d+1)`, so at t = 1
  the flow is far from the target (the ``equilibrium`` baseline's ``rel_error`` is 0.75–1.4).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch
from torch import Tensor
from wgfbench_plugins.problems.fokker_planck import (
    OrnsteinUhlenbeck,
    QuadraticWell,
    gaussian_box,
    gaussian_jko_path,
    random_gaussian_member,
)

import wgfbench
from wgfbench.energy import Energy, Entropy
from wgfbench.problem import InitialFamily, Problem
from wgfbench.references import DTYPE, Gaussian, JKOIterates, Reference

FAMILY = "fokker-planck"
PAPER = 'Mokrov et al., "Large-scale Wasserstein gradient flows", NeurIPS 2021'
PAPER_DIMS = tuple(range(1, 13))
"""The dimensions of the paper's OU study (``dim_min: 1``, ``dim_max: 12``)."""
ANCHOR_DIMS = (2, 4, 8, 12)
"""The dimensions registered as problems (module docstring)."""
ANCHOR_TIMES = (0.0, 0.1, 0.3, 0.5, 0.9, 1.0)
"""Snapshot times: on the paper's 0.1 evaluation grid; 0.5 and 0.9 are the times its notebook
compares at, 1.0 its horizon."""
ANCHOR_DT = 0.05
"""The paper's JKO step."""
SCORE_TIME = 0.9
"""The time of the paper's headline SymKL comparison."""
N_EVAL = 8192
"""Samples per SymKL term in the paper (ICNN-JKO)."""
REPETITIONS = 15
"""Random targets (experiments) per dimension in the paper."""
RANDOM_KEY = "abacaba"
"""The paper's ``random_key``."""
PUBLISHED_SYMKL_T09: dict[str, dict[int, float]] = {
    "ICNN_jko": {
        1: 0.000540, 2: 0.004051, 3: 0.004373, 4: 0.008300, 5: 0.009436, 6: 0.007692,
        7: 0.008498, 8: 0.01029, 9: 0.01118, 10: 0.01346, 11: 0.01531, 12: 0.01906,
    },
    "EM_sim_1000": {2: 0.06081, 4: 0.4097, 8: 2.411, 12: 5.26},
    "EM_sim_10000": {2: 0.01674, 4: 0.1824, 8: 1.688, 12: 4.339},
    "EM_sim_50000": {2: 0.006265, 4: 0.1032, 8: 1.314, 12: 3.832},
    "EM_ProxRec_10000": {2: 0.01125, 4: 0.1721, 8: 1.655, 12: 14.63},
    "dual_jko": {2: 0.07778, 4: 0.2313, 8: 1.199, 12: 1.851},
}  # fmt: skip
"""Median over the 15 experiments of SymKL at t = 0.9, computed from the paper's stored results
(``results/ou_vary_dim/ou_vary_dim_freq-{method}-dim_min=1-dim_max=12-n_exp={0..14}.json``, entry
``[str(d)]["kl_train"][8][1] + [str(d)]["kl_target"][8][1]``)."""


# ----------------------------------------------------------------------------------------------
# The paper's random target


def paper_seed(d: int, repetition: int = 0) -> int:
    """The seed the paper gives NumPy's global RNG before drawing experiment ``repetition``'s target
    in dimension ``d``: CRC-32 of ``f"abacaba@{d}@{repetition}numpy"`` (``manual_random.py``)."""
    return zlib.crc32(f"{RANDOM_KEY}@{d}@{repetition}numpy".encode())


def _canonical_signs(U: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive."""
    pivot = U[np.abs(U).argmax(0), np.arange(U.shape[1])]
    return U * np.where(pivot < 0, -1.0, 1.0)


def paper_target(d: int, repetition: int = 0, *, lapack_signs: bool = False) -> tuple[Tensor, Tensor]:
    r"""The stationary law :math:`\mathcal N(b, \Sigma)` of the paper's experiment ``repetition`` in
    dimension ``d``: mean (d,) and covariance (d, d), float64.

    From ``RandomState(paper_seed(d, repetition))``, in the paper's order:
    :math:`G\sim\mathcal U[0,1)^{d\times d}`; :math:`G^\top G = U\mathrm{diag}(s)V^\top` (SVD);
    :math:`r\sim\mathcal U[0,1)^d`; :math:`\Sigma = U(\mathbf 1\mathbf 1^\top+\mathrm{diag}(r))U^\top`
    (``make_spd_matrix``; :math:`V=U` for the symmetric :math:`G^\top G`); :math:`b\sim\mathcal N(0,I)`.
    Column signs of :math:`U` are canonical unless ``lapack_signs`` (module docstring), in which
    case :math:`\Sigma` is ``make_spd_matrix``'s own result, symmetrised. Independent of every
    global RNG.
    """
    if d < 1 or not 0 <= repetition:
        raise ValueError(f"need d >= 1 and repetition >= 0, got d={d}, repetition={repetition}")
    rng = np.random.RandomState(paper_seed(d, repetition))
    G = rng.uniform(size=(d, d))
    U, _, Vt = scipy.linalg.svd(G.T @ G, check_finite=False)
    r = rng.uniform(size=d)
    if lapack_signs:
        cov = U @ (1.0 + np.diag(r)) @ Vt
    else:
        U = _canonical_signs(U)
        cov = U @ (1.0 + np.diag(r)) @ U.T
    mean = rng.randn(d)
    cov = torch.from_numpy(0.5 * (cov + cov.T))
    return torch.from_numpy(mean), cov


def paper_well(d: int, repetition: int = 0) -> QuadraticWell:
    r""":math:`V(x) = \tfrac12(x-b)^\top\Sigma^{-1}(x-b)` for :func:`paper_target` (β = 1)."""
    mean, cov = paper_target(d, repetition)
    A = torch.linalg.inv(cov)
    return QuadraticWell(0.5 * (A + A.T), mean)


# ----------------------------------------------------------------------------------------------
# Exact JKO iterates for a non-diagonal A


def _sym_function(M: Tensor, f) -> Tensor:
    """:math:`f(M)` for a symmetric matrix through its eigendecomposition."""
    vals, vecs = torch.linalg.eigh(0.5 * (M + M.T))
    return (vecs * f(vals)) @ vecs.T


class GaussianJKOIterates(JKOIterates):
    r"""Exact JKO iterates :math:`\rho^{k+1}=\arg\min_\rho \tfrac1{2\tau}W_2^2(\rho,\rho^k)+\mathcal E(\rho)`
    of :math:`\mathcal E = \int\rho\log\rho + \int V\rho`, :math:`V=\tfrac12(x-\mu)^\top A(x-\mu)`,
    from a Gaussian :math:`\rho^0`, for any symmetric positive definite :math:`A` (derived here).

    The minimiser is Gaussian, :math:`\mathcal N(m_{k+1},\Sigma_{k+1})`, reached from
    :math:`\rho^k=\mathcal N(m_k,\Sigma_k)` by the affine map :math:`x\mapsto m_{k+1}+T(x-m_k)`,
    :math:`T` symmetric positive definite. The Euler–Lagrange equation
    :math:`(T(x)-x)/\tau = -\nabla(\log\rho^{k+1}+V)(T(x))`, with
    :math:`\nabla\log\rho^{k+1}(y) = -\Sigma_{k+1}^{-1}(y-m_{k+1})` and
    :math:`\Sigma_{k+1}=T\Sigma_kT`, splits into

    .. math:: m_{k+1} = (I+\tau A)^{-1}(m_k+\tau A\mu),\qquad
              T(I+\tau A)T - T = \tau\Sigma_k^{-1}.

    With :math:`B = I+\tau A` and :math:`T = B^{-1/2}YB^{-1/2}` the second is
    :math:`Y^2 - Y = C := \tau B^{1/2}\Sigma_k^{-1}B^{1/2}`, whose symmetric positive definite
    solution is :math:`Y = \tfrac12 I + (\tfrac14 I + C)^{1/2}`. For diagonal :math:`A` and
    :math:`\Sigma_0` this is the per-axis formula of
    :class:`~wgfbench_plugins.problems.fokker_planck.OUJKOIterates`. Float64, CPU.
    """

    def __init__(self, flow: OrnsteinUhlenbeck, m0: Tensor, cov0: Tensor):
        self.flow = flow
        self.m0 = torch.as_tensor(m0, dtype=DTYPE).reshape(-1)
        self.cov0 = torch.as_tensor(cov0, dtype=DTYPE)
        self.dim = flow.dim

    def step(self, mean: Tensor, cov: Tensor, tau: float) -> tuple[Tensor, Tensor]:
        """One JKO step of size ``tau`` from :math:`\\mathcal N(m_k, \\Sigma_k)`: (d,), (d, d)."""
        A, mu = self.flow.well.A, self.flow.well.mu
        B = torch.eye(self.dim, dtype=DTYPE) + tau * A
        new_mean = torch.linalg.solve(B, mean + tau * (A @ mu))
        B_half = _sym_function(B, torch.sqrt)
        B_inv_half = _sym_function(B, lambda v: 1.0 / torch.sqrt(v))
        C = tau * B_half @ torch.linalg.inv(cov) @ B_half
        Y = _sym_function(C, lambda v: 0.5 + torch.sqrt(0.25 + v.clamp_min(0.0)))
        T = B_inv_half @ Y @ B_inv_half
        new_cov = T @ cov @ T
        return new_mean, 0.5 * (new_cov + new_cov.T)

    def iterate(self, k: int, tau: float) -> tuple[Tensor, Tensor]:
        """Mean (d,) and covariance (d, d) of :math:`\\rho^k` for step ``tau``."""
        mean, cov = self.m0, self.cov0
        for _ in range(k):
            mean, cov = self.step(mean, cov, tau)
        return mean, cov

    def for_step(self, tau: float) -> Reference:
        """The iterates as a reference in time: ``t = k * tau`` maps to :math:`\\rho^k`."""
        return gaussian_jko_path(self.flow, self.dim, tau, self.iterate)


# ----------------------------------------------------------------------------------------------
# Problems


def _box_times(times: Sequence[float]) -> list[float]:
    return sorted({*times, *torch.linspace(0, times[-1], 201, dtype=DTYPE).tolist()})


def make_ou_anchor(d: int, repetition: int = 0) -> Problem:
    r"""``fokker-planck/ou-anchor-{d}d`` (``repetition`` 0; others get the suffix ``-r{repetition}``):
    the paper's OU experiment ``repetition`` in dimension ``d`` (module docstring)."""
    if d not in PAPER_DIMS or not 0 <= repetition < REPETITIONS:
        raise ValueError(f"the paper has d in 1..12 and repetitions 0..14, got d={d}, {repetition}")
    well = paper_well(d, repetition)
    flow = OrnsteinUhlenbeck(well)
    m0, cov0 = torch.zeros(d, dtype=DTYPE), torch.eye(d, dtype=DTYPE)
    suffix = "" if repetition == 0 else f"-r{repetition}"
    published = PUBLISHED_SYMKL_T09["ICNN_jko"][d]
    return Problem(
        name=f"{FAMILY}/ou-anchor-{d}d{suffix}",
        family=FAMILY,
        dim=d,
        energy=Energy([Entropy(), well.potential()]),
        initial=Gaussian(m0, cov0),
        times=ANCHOR_TIMES,
        dt=ANCHOR_DT,
        references={
            "pde": flow.gaussian_path(m0, cov0),
            "jko": GaussianJKOIterates(flow, m0, cov0),
            "stationary": well.stationary(),
        },
        primary_metric="bures_w2",
        box=gaussian_box(zip(*flow.moments(_box_times(ANCHOR_TIMES), m0, cov0), strict=True)),
        initial_family=InitialFamily(
            f"random Gaussians N(m0, diag(s)), m0 ~ U[-3,3]^{d}, s ~ U[0.1,2]^{d}, exact OU references",
            functools.partial(random_gaussian_member, flow),
        ),
        version=1,
        description=(
            f"Ornstein–Uhlenbeck anchor of {PAPER} (Ornstein–Uhlenbeck dimension study), d = {d}, experiment "
            f"{repetition}: from N(0, I) towards a random Gaussian N(b, Σ) (Σ by sklearn's "
            f"make_spd_matrix, b ~ N(0, I), the paper's seed crc32('abacaba@{d}@{repetition}numpy')), "
            "∂tρ = ∇·(ρΣ⁻¹(x−b)) + Δρ, JKO step 0.05; exact Gaussian solution and exact JKO iterates. "
            f"Published ICNN-JKO median SymKL at t = 0.9 over 15 targets: {published:.3g}."
        ),
    )


@wgfbench.hookimpl
def wgfbench_register_problems(registry) -> None:
    """Register the anchor problems as factories (built on first use)."""
    for d in ANCHOR_DIMS:
        registry.add(functools.partial(make_ou_anchor, d), name=f"{FAMILY}/ou-anchor-{d}d")
