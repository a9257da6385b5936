r"""Entropic JKO (Peyré 2015) on a Cartesian grid over ``problem.box``, in 1, 2 and 3 D.

**The step.** With cell masses :math:`p_i = |K|\rho^n_i` and :math:`q_j = |K|\rho_j` on the grid
points :math:`x_i`, one step of the entropic JKO scheme is

.. math:: \rho^{n+1} = \arg\min_\rho\ \frac{W_\gamma(\rho^n,\rho)}{2\tau} + \mathcal E_h(\rho),\qquad
          W_\gamma(p,q) = \min_{\pi\in\Pi(p,q)}\ \sum_{ij}\pi_{ij}|x_i-x_j|^2
          + \gamma\sum_{ij}\pi_{ij}(\log\pi_{ij}-1)

(G. Peyré, *Entropic approximation of Wasserstein gradient flows*, SIAM J. Imaging Sci. 8 (2015)
2323–2351, §2: the entropic distance and the JKO step; the entropy is taken against the counting
measure of the grid, i.e. Lebesgue up to a constant, never against :math:`p\otimes q`). In the
coupling alone, with the Gibbs kernel :math:`\xi_{ij} = e^{-|x_i-x_j|^2/\gamma}` and
:math:`\sigma = 2\tau/\gamma`, the step is

.. math:: \min_\pi\ \mathrm{KL}(\pi|\xi) + \iota_{\{p\}}(\pi\mathbb 1)
          + \sigma\,\mathcal E_h(\pi^\top\mathbb 1),

solved by Peyré's generalised Sinkhorn iterations (§3, KL-proximal scaling):
:math:`\pi = \mathrm{diag}(a)\,\xi\,\mathrm{diag}(b)` with

.. math:: a \leftarrow \frac{p}{\xi b},\qquad
          b \leftarrow \frac{\operatorname{prox}^{\mathrm{KL}}_{\sigma\mathcal E_h}(\xi^\top a)}{\xi^\top a},
          \qquad q = b\odot\xi^\top a,
          \qquad \operatorname{prox}^{\mathrm{KL}}_{\sigma F}(z) = \arg\min_q \sigma F(q) + \mathrm{KL}(q|z).

The proximal map is pointwise for the local energies (with :math:`\Phi = V + W*\rho`, see below):

* entropy :math:`\sum q\log(q/|K|) + \Phi q`:
  :math:`\log q = \big(\log z + \sigma(\log|K| - 1 - \Phi)\big)/(1+\sigma)`;
* porous medium :math:`|K|\,U(q/|K|)`, :math:`U(r) = r^m/(m-1)`:
  :math:`\log q + \sigma\frac{m}{m-1}(q/|K|)^{m-1} = \log z - \sigma\Phi`, i.e. :math:`w + e^w = A`
  for :math:`w = \log\big(\sigma m (q/|K|)^{m-1}\big)`
  (a Lambert-W equation, solved by Newton from the right: monotone and quadratic);
* no internal energy: :math:`\log q = \log z - \sigma\Phi`.

*Interaction.* :math:`W*\rho` is lagged: it enters the proximal map as a potential frozen at
:math:`\rho^n` (``interaction_sweeps = 1``: a semi-implicit step). With ``interaction_sweeps = k
> 1`` the step is repeated with :math:`\Phi = V + W*\rho^{(j)}` at the previous sweep's result
(Picard, warm-started); a fixed point satisfies the implicit step's optimality condition, since
:math:`\delta\tfrac12\langle\rho,W*\rho\rangle = W*\rho`.

*Numerics.* Everything is in the log domain (:math:`u = \log a`, :math:`v = \log b`), so small
:math:`\gamma` cannot underflow the scalings; :math:`\xi` is separable, :math:`\xi = \otimes_k\xi^{(k)}`,
and is applied axis by axis with dense :math:`n_k\times n_k` matrices: per fibre the exponent is
shifted by its maximum and multiplied by :math:`\xi^{(k)}` (a matmul; terms below :math:`e^{-690}`
are flushed to zero, since subnormal floats slow it down a hundredfold); entries whose shifted
sum falls below ``1e-250`` (the kernel's tails underflow: far from any mass) are recomputed
exactly by ``logsumexp``. The masses entering each step are floored at ``density_floor`` =
``1e-30`` times their maximum (a mass change below float64 round-off of the unit mass) so that
empty regions do not force the exact path at every iteration (measured: 20× faster first steps
on the Barenblatt problem). Stopping rule: the first-marginal violation
:math:`\sum_i|a_i(\xi b)_i - p_i| \le` ``tol``; the second marginal is the proximal output exactly,
so the mass of :math:`q` is :math:`1` to within ``tol``; :math:`q` is then rescaled to unit mass
(round-off), and the largest defect before rescaling is reported in ``info``. The scalings
:math:`v` are warm-started from the previous step. Computations are in float64 on ``ctx.device``.

*The entropic blur is spurious diffusion.* For :math:`\mathcal E = 0` one step convolves
:math:`\rho^n` with the normalised Gibbs kernel, of variance :math:`\gamma/2` per axis: the scheme
adds a linear diffusion :math:`D_\gamma\Delta\rho` with :math:`D_\gamma = \gamma/(4\tau)` (in
general too, Baradat, Hraivoronska & Santambrogio, arXiv:2502.12666, 2025: the limit
:math:`\gamma/\tau\to` const adds a Laplacian). So ``entropic-jko`` is a cheap *baseline*, not a
reference: :math:`\gamma` must be small against :math:`\tau`, but at least about :math:`h^2` so
that the Gibbs kernel is resolved on the grid (by Poisson summation its discrete moments are
exact to :math:`e^{-\pi^2\gamma/h^2}`: :math:`5\cdot10^{-5}` relative at :math:`\gamma = h^2`).
The scheme is the JKO scheme of :math:`W_\gamma`, not of :math:`W_2`: :math:`\mathcal E_h` decreases
while the flow is far from equilibrium compared with the blur (all the tests' runs on ou-2d and
barenblatt-2d-m2), but the scheme's own equilibrium is wider than the minimiser, so near it (or
with a large :math:`\gamma/\tau`) :math:`\mathcal E_h` can rise (measured with
:math:`\gamma/4\tau = 3`). ``gamma`` is absolute, or ``gamma_cells``
:math:`\times h_{\max}^2` by default. In terms of :math:`\sigma = 2\tau/\gamma` the spurious
diffusion is :math:`D_\gamma = 1/(2\sigma)` and the Sinkhorn iteration count grows about like
:math:`\sigma` (measured: ~80, ~200, ~500 iterations per step at σ ≈ 4.6, 16, 41);
``max_sigma`` bounds the cost. Measured (tests, ou-1d, 5 steps of :math:`\tau = 0.05`,
256 cells): the variance exceeds the exact JKO iterate's by 7.3e-2, 3.6e-2, 1.8e-2 for
:math:`\gamma` = 0.04, 0.02, 0.01 (linear in :math:`\gamma`) and matches the continuous
entropic-JKO Gaussian iterate to 1e-11; the mean is the exact JKO mean.

**POT path (Fokker–Planck).** For :math:`\mathcal E = \int\rho\log\rho + \int V\rho`,
:math:`\mathcal E_h(q) = \mathrm{KL}(q\,|\,|K|e^{-V}) + \text{const}` on unit-mass :math:`q`, and the
step is the semi-relaxed unbalanced problem

.. math:: \min_\pi\langle c,\pi\rangle + \gamma\,\mathrm{KL}(\pi|\mathbb 1\mathbb 1^\top)
          + \infty\cdot\mathrm{KL}(\pi\mathbb 1|p) + 2\tau\,\mathrm{KL}(\pi^\top\mathbb 1\,|\,|K|e^{-V}),

i.e. ``ot.unbalanced.sinkhorn_unbalanced`` with
``reg = γ``, ``reg_m = (inf, 2τ)`` and the reference measure ``c`` set to ones (POT's default
``c = a bᵀ`` would regularise against the product of the marginals). Dense :math:`N\times N`
cost: small grids only (``pot_max_cells``); a cross-check of the torch path, not the fast one.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Literal

import torch
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Entropy, PowerInternal
from wgfbench.errors import NonFiniteOutput
from wgfbench.grid import Grid, GridEnergy
from wgfbench.problem import Problem
from wgfbench.solver import Solver, SolverConfig, Support, equal_steps
from wgfbench.trajectory import GridSnapshot, StepRecord, Trajectory

F64 = torch.float64
# A snapshot time is reached when less than this (relative) time remains: float round-off only.
_TIME_TOL = 1e-12
# A shifted fibre sum below this is recomputed by logsumexp (the kernel's tails may have underflowed).
_UNDERFLOW = 1e-250
# Exponents below this are flushed to zero (no subnormals); e^{-690} ≈ 1e-300.
_LOG_TINY = -690.0
# Scalar Newton for w + e^w = A (porous-medium proximal map).
_NEWTON_TOL = 1e-13
_NEWTON_MAX = 60


# ----------------------------------------------------------------------------------------------
# The separable Gibbs kernel in the log domain


class SeparableGibbsKernel:
    r"""The Gibbs kernel :math:`\xi = \otimes_k \xi^{(k)}`,
    :math:`\xi^{(k)}_{ij} = \exp(-(x^{(k)}_i - x^{(k)}_j)^2/\gamma)`, on the cell centres of ``grid``
    (Peyré 2015, §3: the Gibbs kernel of the squared Euclidean cost is separable on grids).

    :meth:`log_apply` maps :math:`\log v` to :math:`\log(\xi v)` (``v`` ≥ 0 of shape ``grid.shape``,
    float64); :math:`\xi` is symmetric, so the same map gives :math:`\log(\xi^\top v)`.
    """

    def __init__(self, grid: Grid, gamma: float, device: torch.device | str = "cpu"):
        self.grid, self.gamma = grid, float(gamma)
        self.log_kernels: list[Tensor] = []
        self.kernels: list[Tensor] = []
        for x in grid.axes(F64, device):
            log_k = -((x[:, None] - x[None, :]) ** 2) / self.gamma
            self.log_kernels.append(log_k)
            # Entries below e^{-690} are set to 0: subnormal floats make the matmul ~100× slower, and
            # a sum that small is recomputed exactly (_UNDERFLOW) anyway.
            self.kernels.append(torch.where(log_k > _LOG_TINY, torch.exp(log_k), torch.zeros_like(log_k)))

    def _log_apply_axis(self, log_v: Tensor, axis: int) -> Tensor:
        r""":math:`\log\sum_j \xi^{(k)}_{ij} e^{(\log v)_{\dots j\dots}}` along ``axis``: matmul with a
        per-fibre shift, exact ``logsumexp`` for the entries whose shifted sum underflows."""
        moved = log_v.movedim(axis, -1)
        shape = moved.shape
        fibres = moved.reshape(-1, shape[-1])
        shift = fibres.amax(dim=1, keepdim=True)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        shifted = fibres - shift
        scaled = torch.where(shifted > _LOG_TINY, torch.exp(shifted), torch.zeros_like(shifted))
        summed = scaled @ self.kernels[axis]  # ξ^{(k)} is symmetric
        out = torch.log(summed) + shift
        bad = summed < _UNDERFLOW
        if bool(bad.any()):
            fibre, i = bad.nonzero(as_tuple=True)
            out[fibre, i] = torch.logsumexp(fibres[fibre] + self.log_kernels[axis][i], dim=-1)
        return out.reshape(shape).movedim(-1, axis)

    def log_apply(self, log_v: Tensor) -> Tensor:
        r""":math:`\log(\xi v)` for ``log_v`` = :math:`\log v` of shape ``grid.shape`` (float64)."""
        out = log_v
        for axis in range(log_v.dim()):
            out = self._log_apply_axis(out, axis)
        return out


# ----------------------------------------------------------------------------------------------
# KL-proximal maps of the grid energy


def lambert_log_solve(A: Tensor, start: Tensor | None = None) -> Tensor:
    r"""The solution :math:`w` of :math:`w + e^w = A` (i.e. :math:`w = \log W_0(e^A)`, Lambert W)
    for every entry of ``A``, by Newton from the right: :math:`g(w) = w + e^w - A` is increasing and
    convex and :math:`w_0 = A` (:math:`A<1`) or :math:`\log A` (:math:`A\ge1`) has :math:`g(w_0)\ge0`,
    so the iterates decrease monotonically to the root (quadratically). ``-inf`` maps to ``-inf``.
    ``start`` (e.g. the previous solution) replaces :math:`w_0` where finite: from the left of the
    root the first Newton step lands right of it (convexity), after which the decrease is monotone."""
    finite = torch.isfinite(A)
    a = torch.where(finite, A, torch.zeros_like(A))
    w = torch.where(a < 1.0, a, torch.log(a.clamp_min(1.0)))
    if start is not None:
        w = torch.where(torch.isfinite(start), start, w)
    for _ in range(_NEWTON_MAX):
        ew = torch.exp(w)
        step = (w + ew - a) / (1.0 + ew)
        w = w - step
        if float(step.abs().max()) <= _NEWTON_TOL * (1.0 + float(w.abs().max())):
            break
    return torch.where(finite, w, A)


class KLProximalMap:
    r""":math:`\log\operatorname{prox}^{\mathrm{KL}}_{\sigma\mathcal E_h}(z)` as a function of :math:`\log z`
    (module docstring; Peyré 2015, §3 and §4 for the closed forms) for masses on ``grid``: the
    internal energy :math:`\sum_K |K|U(q_K/|K|)` (Entropy, PowerInternal or none) plus the potential
    :math:`\sum_K \Phi_K q_K`. ``Phi`` has shape ``grid.shape``; ``sigma`` = :math:`2\tau/\gamma`."""

    def __init__(self, internal: Entropy | PowerInternal | None, cell_volume: float, sigma: float):
        if internal is not None and not isinstance(internal, Entropy | PowerInternal):
            raise TypeError(f"no KL-proximal map for {type(internal).__name__}")
        self.internal, self.log_cell, self.sigma = internal, math.log(cell_volume), float(sigma)
        self._last_w: Tensor | None = None  # warm start of the scalar Newton solve

    def __call__(self, log_z: Tensor, Phi: Tensor) -> Tensor:
        s = self.sigma
        if self.internal is None:
            return log_z - s * Phi
        if isinstance(self.internal, Entropy):
            return (log_z + s * (self.log_cell - 1.0 - Phi)) / (1.0 + s)
        m = self.internal.m
        # log q + s m/(m-1) (q/|K|)^{m-1} = r,  r = log z - s Φ;  y = s m (q/|K|)^{m-1}:
        # log y + y = (m-1) r + log(s m) - (m-1) log|K| =: A,  log q = (log y - log(s m))/(m-1) + log|K|.
        log_sm = math.log(s * m)
        A = (m - 1.0) * (log_z - s * Phi) + log_sm - (m - 1.0) * self.log_cell
        start = self._last_w if self._last_w is not None and self._last_w.shape == A.shape else None
        w = lambert_log_solve(A, start)
        self._last_w = w
        return (w - log_sm) / (m - 1.0) + self.log_cell


# ----------------------------------------------------------------------------------------------
# One entropic JKO step (the step-level API)


class EntropicJKOStep:
    r"""Peyré's entropic JKO step on ``grid`` for ``grid_energy`` with step ``tau`` and entropic
    parameter ``gamma`` (absolute; Gibbs kernel :math:`e^{-|x-y|^2/\gamma}`).

    ``step(rho)`` maps a cell density ``rho`` (shape ``grid.shape``, float64, unit mass) to
    ``(rho_next, iterations)``: the generalised Sinkhorn iterations of the module docstring until
    the first-marginal violation :math:`\sum_i|a_i(\xi b)_i - p_i|` is at most ``tol`` (summed over
    interaction sweeps). The log-scaling :math:`v = \log b` is kept and warm-starts the next call.
    After each call ``marginal_error`` is the final violation and ``mass_defect`` the
    :math:`|\sum q - 1|` before the rescaling to unit mass.
    """

    def __init__(
        self,
        grid: Grid,
        grid_energy: GridEnergy,
        tau: float,
        gamma: float,
        tol: float = 1e-9,
        max_iterations: int = 20000,
        interaction_sweeps: int = 1,
        density_floor: float = 1e-30,
        device: torch.device | str = "cpu",
    ):
        internal = grid_energy.internal
        if internal is not None and not isinstance(internal, Entropy | PowerInternal):
            raise ValueError(f"entropic-jko has no proximal map for {type(internal).__name__}")
        self.grid, self.energy, self.tau, self.gamma = grid, grid_energy, float(tau), float(gamma)
        self.tol, self.max_iterations, self.sweeps = float(tol), int(max_iterations), int(interaction_sweeps)
        self.floor = float(density_floor)
        self.device = torch.device(device)
        self.kernel = SeparableGibbsKernel(grid, self.gamma, self.device)
        self.prox = KLProximalMap(internal, grid.cell_volume, 2.0 * self.tau / self.gamma)
        self.V = grid_energy.V.to(dtype=F64, device=self.device)
        self.log_b: Tensor | None = None
        self.marginal_error = math.nan
        self.mass_defect = math.nan
        self.converged = True

    def potential(self, rho: Tensor) -> Tensor:
        r""":math:`\Phi = V + W*\rho` at the cell centres (the lagged interaction as a potential)."""
        if not self.energy.has_interaction:
            return self.V
        return self.V + self.energy.convolve(rho).to(self.V)

    def sinkhorn(self, log_p: Tensor, Phi: Tensor) -> tuple[Tensor, int]:
        r"""Generalised Sinkhorn for fixed :math:`\Phi` from the masses :math:`\log p`; returns
        :math:`\log q` (the second marginal, unnormalised) and the iteration count."""
        log_v = torch.zeros_like(log_p) if self.log_b is None else self.log_b
        log_q = log_p
        log_u, p = log_p, torch.exp(log_p)
        iterations = 0
        self.converged = False
        for iterations in range(1, self.max_iterations + 1):
            log_xi_b = self.kernel.log_apply(log_v)
            if iterations > 1:
                error = float((torch.exp(log_u + log_xi_b) - p).abs().sum())
                self.marginal_error = error
                if not math.isfinite(error):
                    raise NonFiniteOutput("entropic-jko: non-finite Sinkhorn marginal")
                if error <= self.tol:
                    self.converged = True
                    break
            log_u = log_p - log_xi_b
            log_z = self.kernel.log_apply(log_u)
            log_q = self.prox(log_z, Phi)
            log_v = torch.where(torch.isfinite(log_z), log_q - log_z, torch.full_like(log_z, -math.inf))
        self.log_b = log_v
        return log_q, iterations

    def step(self, rho: Tensor) -> tuple[Tensor, int]:
        """One entropic JKO step from ``rho`` (cell density, ``grid.shape``); returns the next cell
        density (unit mass, ``grid.shape``, float64) and the Sinkhorn iterations used."""
        rho = rho.to(dtype=F64, device=self.device)
        cell = self.grid.cell_volume
        p = rho.clamp_min(0.0) * cell
        if self.floor > 0:
            p = p.clamp_min(self.floor * float(p.max()))
        log_p = torch.log(p / p.sum())
        total = 0
        current = rho
        for _ in range(max(1, self.sweeps) if self.energy.has_interaction else 1):
            log_q, iterations = self.sinkhorn(log_p, self.potential(current))
            total += iterations
            q = torch.exp(log_q)
            mass = float(q.sum())
            self.mass_defect = abs(mass - 1.0)
            current = q / (mass * cell)
        if not torch.isfinite(current).all():
            raise NonFiniteOutput("entropic-jko: non-finite density after a step")
        return current, total


# ----------------------------------------------------------------------------------------------
# The POT path (Fokker–Planck)


def pot_fokker_planck_step(
    grid: Grid,
    V: Tensor,
    rho: Tensor,
    tau: float,
    gamma: float,
    tol: float = 1e-12,
    max_iterations: int = 100000,
    warmstart: tuple[Any, Any] | None = None,
) -> tuple[Tensor, int, tuple[Any, Any]]:
    r"""One entropic JKO step for :math:`\mathcal E = \int\rho\log\rho + \int V\rho` with POT: the
    semi-relaxed unbalanced problem of the module docstring,
    ``ot.unbalanced.sinkhorn_unbalanced(p, |K|e^{-V}, C, reg=γ, reg_m=(inf, 2τ), c=1)`` with the
    dense squared-distance cost ``C`` between cell centres. POT's plain scaling (``method="sinkhorn"``)
    is used: its ``sinkhorn_stabilized`` variant stopped after 4–12 iterations on these problems
    (measured, POT 0.9.7), far from the fixed point; a POT warning (numerical errors) raises.
    ``rho``, ``V``: shape ``grid.shape``. Returns the next cell density (unit mass), POT's iteration
    count and the log-scalings (a warm start for the next step)."""
    import numpy as np
    import ot

    cell = grid.cell_volume
    x = grid.centres(F64).reshape(-1, grid.dim).numpy()
    cost = ot.dist(x, x)  # squared Euclidean
    p = (rho.detach().to("cpu", F64).reshape(-1) * cell).numpy()
    target = cell * np.exp(-V.detach().to("cpu", F64).reshape(-1).numpy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.unbalanced.sinkhorn_unbalanced(
            p,
            target,
            cost,
            reg=gamma,
            reg_m=(float("inf"), 2.0 * tau),
            method="sinkhorn",
            reg_type="kl",
            c=np.ones_like(cost),
            warmstart=warmstart,
            numItermax=max_iterations,
            stopThr=tol,
            log=True,
        )
    if caught:
        raise NonFiniteOutput(f"entropic-jko (POT): {caught[0].message}")
    q = plan.sum(axis=0)
    rho_next = torch.as_tensor(q / (q.sum() * cell), dtype=F64).reshape(grid.shape)
    return rho_next, len(log["err"]), (log["logu"], log["logv"])


# ----------------------------------------------------------------------------------------------
# The solver plugin


class EntropicJKOConfig(SolverConfig):
    """Configuration of :class:`EntropicJKO`.

    ``cells``: cells per axis in 1, 2 and 3 D. ``tau``: the JKO step; ``None`` means
    ``problem.dt * tau_factor`` (each interval between snapshots is cut into equal steps of at most
    that size). ``gamma``: the absolute entropic parameter (Gibbs kernel
    :math:`e^{-|x-y|^2/\\gamma}`); ``None`` means ``gamma_cells`` × :math:`h_{\\max}^2`, raised to
    :math:`2\\tau/` ``max_sigma`` if that is larger (σ = 2τ/γ: Sinkhorn iterations grow like σ,
    the spurious diffusion is 1/(2σ)). ``tol``: Sinkhorn stopping tolerance on the first-marginal
    L1 violation (in mass). ``interaction_sweeps``: Picard sweeps on the lagged interaction (1:
    frozen at :math:`\\rho^n`). ``density_floor``: masses are floored at this times their maximum
    before each step (module docstring). ``backend``: ``"torch"`` (log-domain separable Sinkhorn)
    or ``"pot"`` (Fokker–Planck only, dense cost, at most ``pot_max_cells`` cells).
    """

    cells: tuple[PositiveInt, PositiveInt, PositiveInt] = (256, 96, 24)
    tau: PositiveFloat | None = None
    tau_factor: PositiveFloat = 1.0
    gamma: PositiveFloat | None = None
    gamma_cells: PositiveFloat = 1.0
    max_sigma: PositiveFloat | None = None
    tol: PositiveFloat = 1e-9
    max_iterations: PositiveInt = 20000
    interaction_sweeps: PositiveInt = 1
    density_floor: NonNegativeFloat = 1e-30
    backend: Literal["torch", "pot"] = "torch"
    pot_max_cells: PositiveInt = 4096


def entropic_jko_support(problem: Problem, backend: str = "torch") -> Support:
    """``True`` when the entropic JKO step applies: a box in 1–3 D, the Wasserstein mobility and an
    internal energy with a KL-proximal map (Entropy, PowerInternal or none); the POT backend only
    for Fokker–Planck (Entropy, no interaction). Otherwise the reason."""
    energy = problem.energy
    if problem.box is None:
        return "entropic-jko is a grid solver and needs a problem box"
    if not 1 <= problem.dim <= 3:
        return f"entropic-jko runs on grids in 1-3 D, not {problem.dim}-D"
    if problem.mobility.kind != "wasserstein":
        return f"entropic-jko needs the Wasserstein mobility, not {problem.mobility.kind!r}"
    internal = energy.internal
    if internal is not None and not isinstance(internal, Entropy | PowerInternal):
        return f"entropic-jko has no KL-proximal map for the internal energy {type(internal).__name__}"
    if backend == "pot" and (not isinstance(internal, Entropy) or energy.interactions):
        return "the POT backend covers Fokker-Planck only (entropy plus potentials, no interaction)"
    return True


class EntropicJKO(Solver):
    """Peyré's entropic JKO on a grid over ``problem.box`` (module docstring).

    Output: one :class:`GridSnapshot` (cell densities, unit mass) per ``problem.times``, one
    :class:`StepRecord` per JKO step (energy: the grid energy :math:`\\mathcal E_h`; iterations: the
    Sinkhorn iterations), ``jko_tau`` = τ when every step had the same τ.
    """

    name = "entropic-jko"
    Config = EntropicJKOConfig
    citation = r"""@article{peyre2015entropic,
  title   = {Entropic Approximation of {W}asserstein Gradient Flows},
  author  = {Peyr{\'e}, Gabriel},
  journal = {SIAM Journal on Imaging Sciences},
  volume  = {8}, number = {4}, pages = {2323--2351}, year = {2015}
}
@article{jordan1998variational,
  title   = {The Variational Formulation of the {F}okker--{P}lanck Equation},
  author  = {Jordan, Richard and Kinderlehrer, David and Otto, Felix},
  journal = {SIAM Journal on Mathematical Analysis},
  volume  = {29}, number = {1}, pages = {1--17}, year = {1998}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"cells": (64, 32, 12), "tol": 1e-7, "max_sigma": 8.0},
        "quick": {"cells": (256, 128, 32), "tol": 1e-8, "max_sigma": 50.0},
        "large": {"cells": (1024, 256, 64), "tol": 1e-9, "max_sigma": 200.0},
    }

    config: EntropicJKOConfig

    def supports(self, problem: Problem) -> Support:
        return entropic_jko_support(problem, self.config.backend)

    def grid_for(self, problem: Problem) -> Grid:
        """The grid over ``problem.box`` with ``cells[dim - 1]`` cells per axis."""
        assert problem.box is not None
        return Grid.with_cells(problem.box, self.config.cells[problem.dim - 1])

    def gamma_for(self, grid: Grid, tau: float) -> float:
        """``config.gamma``, or ``gamma_cells`` × :math:`h_{\\max}^2` raised to :math:`2\\tau/`
        ``max_sigma`` when that is larger."""
        config = self.config
        if config.gamma is not None:
            return config.gamma
        gamma = config.gamma_cells * max(grid.h) ** 2
        return gamma if config.max_sigma is None else max(gamma, 2.0 * tau / config.max_sigma)

    def base_step(self, problem: Problem) -> float:
        return self.config.tau if self.config.tau is not None else problem.dt * self.config.tau_factor

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """Run the entropic JKO scheme from ``problem.initial`` (discretised at cell centres) to
        ``problem.times[-1]``; snapshots exactly at ``problem.times``."""
        reason = self.supports(problem)
        if reason is not True:
            raise ValueError(f"entropic-jko does not support {problem.name}: {reason}")
        config = self.config
        grid = self.grid_for(problem)
        if config.backend == "pot" and grid.n_cells > config.pot_max_cells:
            raise ValueError(
                f"the POT backend needs at most pot_max_cells={config.pot_max_cells} cells, "
                f"got {grid.n_cells}"
            )
        device = ctx.device
        tau_max = self.base_step(problem)
        gamma = self.gamma_for(grid, tau_max)
        grid_energy = GridEnergy(problem.energy, grid, F64, device)
        rho = grid.discretise(problem.initial.log_density, F64, device)
        snapshots = [GridSnapshot(0.0, problem.box, rho.clone())]
        steps: list[StepRecord] = []
        steppers: dict[float, EntropicJKOStep] = {}
        warm: tuple[Any, Any] | None = None
        t, t_final, n_steps, total_iterations = 0.0, problem.final_time, 0, 0
        taus: set[float] = set()
        worst_defect, worst_marginal, unconverged = 0.0, 0.0, 0
        for t_next in problem.times[1:]:
            remaining = t_next - t
            k, tau = equal_steps(remaining, tau_max)
            taus.add(round(tau, 12))
            for _ in range(k):
                ctx.check_budget()
                if config.backend == "pot":
                    rho, iterations, warm = pot_fokker_planck_step(
                        grid, grid_energy.V, rho, tau, gamma, config.tol, config.max_iterations, warm
                    )
                    rho = rho.to(device)
                else:
                    key = round(tau, 12)
                    if key not in steppers:
                        steppers[key] = EntropicJKOStep(
                            grid,
                            grid_energy,
                            tau,
                            gamma,
                            tol=config.tol,
                            max_iterations=config.max_iterations,
                            interaction_sweeps=config.interaction_sweeps,
                            density_floor=config.density_floor,
                            device=device,
                        )
                        previous = next(iter(steppers.values()))
                        steppers[key].log_b = previous.log_b
                    stepper = steppers[key]
                    rho, iterations = stepper.step(rho)
                    worst_defect = max(worst_defect, stepper.mass_defect)
                    worst_marginal = max(worst_marginal, stepper.marginal_error)
                    unconverged += not stepper.converged
                n_steps += 1
                total_iterations += iterations
                t = t_next if n_steps and abs(t_next - (t + tau)) <= _TIME_TOL * max(1.0, t_next) else t + tau
                energy = float(grid_energy.value(rho))
                steps.append(StepRecord(t=t, tau=tau, energy=energy, iterations=iterations))
                ctx.progress(min(1000, int(1000 * t / t_final)), 1000)
            t = t_next
            snapshots.append(GridSnapshot(t_next, problem.box, rho.clone()))
        info: dict[str, float | int | str] = {
            "scheme": f"entropic-jko/{config.backend}",
            "cells": "x".join(str(n) for n in grid.shape),
            "gamma": gamma,
            "tau_max": tau_max,
            "n_steps": n_steps,
            "sinkhorn_iterations": total_iterations,
            "spurious_diffusion": gamma / (4.0 * tau_max),
        }
        if config.backend == "torch":
            info |= {
                "max_mass_defect": worst_defect,
                "max_marginal_error": worst_marginal,
                "unconverged_steps": unconverged,
            }
        jko_tau = next(iter(taus)) if len(taus) == 1 else None
        return Trajectory(snapshots=snapshots, steps=steps, jko_tau=jko_tau, info=info)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`EntropicJKO` as ``entropic-jko``."""
    registry.add(EntropicJKO)
