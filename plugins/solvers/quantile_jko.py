r"""The 1-D Lagrangian (quantile) JKO scheme: the project's 1-D reference solver.

**Discretisation.** In one dimension a probability measure is its quantile function
:math:`X(q)`, :math:`q\in(0,1)`, and :math:`W_2^2(\mu,\nu)=\int_0^1|X_\mu-X_\nu|^2dq` exactly. The
solver carries :math:`N` equal-mass particles :math:`x_1<\dots<x_N` at the cell-centred quantile
levels :math:`q_i=(i-\tfrac12)\Delta q`, :math:`\Delta q=1/N` (Gosse & Toscani, SIAM J. Sci.
Comput. 28 (2006); Blanchet, Calvez & Carrillo, SIAM J. Numer. Anal. 46 (2008); Matthes &
Osberger, ESAIM M2AN 48 (2014)), and the discrete energy

.. math:: E_N(x) = \Delta q\sum_i V(x_i) + \frac{\Delta q^2}2\sum_{i\ne j}W(x_i-x_j)
          + \Delta q\sum_{i=1}^{N-1}\tilde U\Big(\frac{x_{i+1}-x_i}{\Delta q}\Big),
          \qquad \tilde U(s) = sU(1/s),

i.e. the density :math:`\Delta q/(x_{i+1}-x_i)` on each interval between neighbours:
:math:`\tilde U(s)=-\log s` for the entropy, :math:`s^{1-m}/(m-1)` for :math:`U=\rho^m/(m-1)`.

**Walls** (problems posed on ``problem.box`` with no flux, ``problem.box.wall``, e.g.
``fokker-planck/box-1d``). The
two boundary intervals :math:`[a,x_1]` and :math:`[x_N,b]` carry the remaining half cells of mass
:math:`\Delta q/2` each (:math:`q_1=\Delta q/2`, :math:`1-q_N=\Delta q/2`), with density
:math:`(\Delta q/2)/(x_1-a)` and :math:`(\Delta q/2)/(b-x_N)`; their internal energy is

.. math:: \int_a^{x_1}U(\rho) = \frac{\Delta q}2\tilde U\Big(\frac{x_1-a}{\Delta q/2}\Big),\qquad
          \int_{x_N}^b U(\rho) = \frac{\Delta q}2\tilde U\Big(\frac{b-x_N}{\Delta q/2}\Big),

added to :math:`E_N`. The discrete density then has mass exactly one on :math:`[a,b]`, and
:math:`\tilde U(s)\to+\infty` as :math:`s\to0` keeps every particle strictly inside the box (the
discrete form of the no-flux condition). With ``walls="auto"`` the walls are used when the
problem says its box is a wall (``problem.box.wall``, :func:`has_walls`); on problems whose box
is only a computational window (Gaussians, compactly supported Barenblatt) there are none and the
outer half cells are not represented (their mass is in the particles).

**Time step.** One JKO step with the exact 1-D Wasserstein distance between equal-mass sorted
particles, :math:`W_2^2=\Delta q|x-x^n|^2`,

.. math:: x^{n+1} = \arg\min_x\ \Phi(x) = \frac{\Delta q}{2\tau}|x-x^n|^2 + E_N(x),

is solved by damped Newton from :math:`x^n`. The Hessian of :math:`\Phi` is
:math:`\frac{\Delta q}\tau I + \Delta q\,\mathrm{diag}V''(x_i)` plus the tridiagonal internal-energy
block :math:`\frac1{\Delta q}\tilde U''(s_i)\big[\begin{smallmatrix}1&-1\\-1&1\end{smallmatrix}\big]`
per interval (``scipy.linalg.solve_banded``), plus the dense interaction block
:math:`H^W_{kj}=-\Delta q^2w''(|x_k-x_j|)`, :math:`H^W_{kk}=\Delta q^2\sum_{j\ne k}w''(|x_k-x_j|)`
for :math:`W(z)=w(|z|)`:

* kernels that are polynomials of degree ≤ 2 in :math:`r=|z|` (``Quadratic``, ``Newtonian(1)``
  :math:`=-r`, ``PowerLaw`` with :math:`a\in\{1,2\}` and their sums, :math:`w=\alpha r+\beta r^2/2`)
  have, for sorted particles, the closed forms
  :math:`\sum_{i<j}(x_j-x_i)=\sum_i(2i-N-1)x_i` and
  :math:`\sum_{i<j}(x_j-x_i)^2=N\sum x_i^2-(\sum x_i)^2`: energy and gradient cost :math:`O(N)` and the
  Hessian is tridiagonal minus the rank one :math:`\Delta q^2\beta\,\mathbf 1\mathbf 1^\top`, solved
  exactly by Sherman–Morrison;
* other kernels: pair sums in chunks (:math:`O(N^2)`, :math:`w'`, :math:`w''` in closed form for
  ``PowerLaw``/``Newtonian`` and by autograd otherwise) and a Hessian-free preconditioned CG
  (preconditioner: the tridiagonal part plus the diagonal of :math:`H^W`).

:math:`V''` is a central difference of ``energy.grad_V`` (step :math:`\epsilon^{1/3}\max(1,|x|)`,
relative error :math:`\sim10^{-10}`): only the Newton direction uses it, the gradient is exact, so
the minimiser is not affected. A direction that is not a descent direction (non-convex
:math:`V`/:math:`W`) is replaced by the proximal gradient step :math:`-(\tau/\Delta q)\nabla\Phi`.
The step length is limited so that every gap :math:`x_{i+1}-x_i` (and the wall gaps) shrinks by at
most a factor ``1 - fraction_to_boundary`` (order is kept even where :math:`\tilde U` is no
barrier, e.g. without internal energy), then backtracked (Armijo) on :math:`\Phi`. Every accepted
step lowers :math:`\Phi`, so :math:`E_N(x^{n+1}) + \frac{\Delta q}{2\tau}|x^{n+1}-x^n|^2\le E_N(x^n)`:
the discrete energy never increases. Mass is exact by construction (equal masses :math:`\Delta q`).

The scheme is first order in :math:`\tau`; the spatial error of the particle positions is
second order in :math:`\Delta q` for smooth data (checked against the exact OU JKO iterates in the
tests). Steps are cut so that the snapshot times are hit exactly: each interval between snapshots
is split into :math:`\lceil\Delta t/\tau\rceil` equal steps; ``jko_tau`` is reported only when all
steps equal :math:`\tau`.

**Output.** A :class:`ParticleSnapshot` per time with ``x`` (N, 1) and ``log_rho`` at the
particles from the spacings, :math:`\rho(x_i)\approx2\Delta q/(x_{i+1}-x_{i-1})` (centred, second
order) and :math:`\Delta q/(x_2-x_1)`, :math:`\Delta q/(x_N-x_{N-1})` at the ends (one-sided). All
arithmetic is float64 numpy/scipy on the CPU; snapshots are CPU float64 tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
from pydantic import PositiveFloat, PositiveInt, confloat, conint

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import (
    Energy,
    Entropy,
    InternalEnergy,
    Kernel,
    KernelSum,
    Newtonian,
    PowerInternal,
    PowerLaw,
    Quadratic,
)
from wgfbench.errors import NonFiniteOutput
from wgfbench.problem import Box, Problem
from wgfbench.references import Distribution
from wgfbench.solver import Solver, SolverConfig, Support, equal_steps
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory

# Pairs per chunk in the O(N²) interaction sums.
_PAIR_CHUNK = 4_000_000
# Up to this N the matrix of w''(|x_k - x_j|) is kept during one Newton iteration's CG solve.
_DENSE_HESSIAN_MAX = 3000


class QuantileJKOConfig(SolverConfig):
    """Configuration of :class:`QuantileJKO`.

    ``n_particles``: N (the scorer scores every particle up to the tier's ``n_output``). ``tau``:
    the JKO step; ``None`` means ``problem.dt * tau_factor``. ``walls``: ``"auto"`` (:func:`has_walls`),
    ``"box"`` (no-flux walls at ``problem.box``) or ``"none"``. ``newton_tol``: stop when the
    largest force per unit mass :math:`|\\partial_{x_i}\\Phi|/\\Delta q` is below it (or the Newton
    displacement is at round-off). ``max_newton``: Newton iterations per step.
    ``fraction_to_boundary``: largest relative shrink of any gap in one Newton update.
    ``quantile_panels``: Gauss–Legendre panels of the initial CDF inversion.
    """

    n_particles: conint(ge=3) = 2000  # type: ignore[valid-type]
    tau: PositiveFloat | None = None
    tau_factor: PositiveFloat = 1.0
    walls: Literal["auto", "box", "none"] = "auto"
    newton_tol: PositiveFloat = 1e-9
    max_newton: PositiveInt = 50
    fraction_to_boundary: confloat(gt=0.0, lt=1.0) = 0.9  # type: ignore[valid-type]
    quantile_panels: PositiveInt = 4096


# ----------------------------------------------------------------------------------------------
# Initial quantiles


def _gauss_legendre(order: int = 8) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(order)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def _density_fn(law: Distribution) -> Callable[[np.ndarray], np.ndarray]:
    def density(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1, 1))
        with torch.no_grad():
            rho = torch.exp(law.log_density(t)).numpy()
        return np.nan_to_num(rho.reshape(np.shape(x)), nan=0.0, posinf=0.0)

    return density


def quantile_bracket(law: Distribution, box: Box | None) -> tuple[float, float]:
    """An interval holding (all but a negligible part of) the 1-D ``law``: the ``box`` when given,
    else mean ± 40 standard deviations (``law.mean()``/``law.cov()``)."""
    if box is not None:
        return float(box.low[0]), float(box.high[0])
    mean, cov = law.mean(), law.cov()
    if mean is None or cov is None:
        raise ValueError("no box and no moments: cannot bracket the initial law")
    sd = math.sqrt(float(cov.reshape(-1)[0]))
    return float(mean.reshape(-1)[0]) - 40.0 * sd, float(mean.reshape(-1)[0]) + 40.0 * sd


def law_quantiles(
    law: Distribution, q: np.ndarray, bracket: tuple[float, float], panels: int = 4096, max_iter: int = 100
) -> np.ndarray:
    r"""The quantiles :math:`X(q)=F^{-1}(q)` of a 1-D ``law`` with a density, deterministically.

    :math:`F(x)=\int_a^x\rho/\int_a^b\rho` on the ``bracket`` :math:`[a,b]`: cumulative 8-point
    Gauss–Legendre sums over ``panels`` equal panels give :math:`F` at the panel edges; in the
    panel holding :math:`q` the equation :math:`F(x)=q` is solved by safeguarded Newton
    (:math:`x\leftarrow x-(F(x)-q)/\rho(x)`, bisection when the update leaves the bracket), with
    :math:`F(x)` from the edge value plus a Gauss–Legendre integral over :math:`[\text{edge},x]`.
    Accurate to round-off for smooth densities; where :math:`\rho` has a kink or a power-law edge
    (Barenblatt) the panel sums carry the quadrature error of that panel only. ``q`` (N,) in (0, 1);
    returns (N,) float64, non-decreasing.
    """
    a, b = bracket
    nodes, weights = _gauss_legendre(8)
    density = _density_fn(law)
    edges = np.linspace(a, b, panels + 1)
    width = edges[1] - edges[0]
    pts = edges[:-1, None] + width * nodes[None, :]
    panel_mass = density(pts) @ weights * width
    cum = np.concatenate([[0.0], np.cumsum(panel_mass)])
    total = cum[-1]
    if not total > 0:
        raise ValueError("the initial law has no mass in the bracket")
    target = np.asarray(q, dtype=np.float64) * total
    k = np.clip(np.searchsorted(cum, target, side="right") - 1, 0, panels - 1)
    lo, hi = edges[k].copy(), edges[k + 1].copy()
    base = cum[k]
    x = lo + (target - base) / np.maximum(panel_mass[k], 1e-300) * width
    x = np.clip(x, lo, hi)
    for _ in range(max_iter):
        span = x - edges[k]
        F = base + density(edges[k][:, None] + span[:, None] * nodes[None, :]) @ weights * span
        residual = F - target
        hi = np.where(residual > 0, x, hi)
        lo = np.where(residual <= 0, x, lo)
        rho = density(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = x - residual / rho
        ok = np.isfinite(newton) & (newton > lo) & (newton < hi)
        x_new = np.where(ok, newton, 0.5 * (lo + hi))
        if np.all(np.abs(x_new - x) <= 4e-16 * np.maximum(1.0, np.abs(x))):
            x = x_new
            break
        x = x_new
    return np.maximum.accumulate(x)


def initial_quantiles(law: Distribution, n: int, box: Box | None, panels: int = 4096) -> np.ndarray:
    r"""Particles :math:`x_i = X_0(q_i)`, :math:`q_i=(i-\tfrac12)/N`, of the initial ``law`` (1-D):
    :func:`law_quantiles` when the law has a density; otherwise (only then) the order statistics
    of :math:`200N` samples from a fixed seed, averaged in blocks of 200. Returns (N,) float64."""
    q = (np.arange(n, dtype=np.float64) + 0.5) / n
    if law.has_density:
        return law_quantiles(law, q, quantile_bracket(law, box), panels=panels)
    generator = torch.Generator().manual_seed(0)
    samples = np.sort(law.sample(200 * n, generator).numpy().reshape(-1))
    return samples.reshape(n, 200).mean(axis=1)


def has_walls(problem: Problem) -> bool:
    """Whether ``problem`` is posed on its box with no-flux walls (``problem.box.wall``, set by
    the problem: :class:`wgfbench.Box`), which ``walls="auto"`` then uses."""
    return problem.box is not None and problem.box.wall


def log_density_from_spacings(x: np.ndarray) -> np.ndarray:
    r""":math:`\log\rho(x_i)` from the spacings of the sorted equal-mass particles ``x`` (N,):
    :math:`\rho_i=2\Delta q/(x_{i+1}-x_{i-1})` inside, :math:`\Delta q/(x_2-x_1)` and
    :math:`\Delta q/(x_N-x_{N-1})` at the ends. Returns (N,) float64."""
    n = x.size
    dq = 1.0 / n
    rho = np.empty(n)
    rho[1:-1] = 2.0 * dq / (x[2:] - x[:-2])
    rho[0] = dq / (x[1] - x[0])
    rho[-1] = dq / (x[-1] - x[-2])
    return np.log(rho)


# ----------------------------------------------------------------------------------------------
# Energy terms on sorted particles


def internal_profile(internal: InternalEnergy) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    r""":math:`(\tilde U, \tilde U', \tilde U'')(s)` for :math:`\tilde U(s)=sU(1/s)`:
    entropy :math:`(-\log s, -1/s, 1/s^2)`; :math:`U=\rho^m/(m-1)`:
    :math:`(s^{1-m}/(m-1), -s^{-m}, m s^{-m-1})`. ``s`` > 0 (n,) float64."""
    if isinstance(internal, Entropy):
        return lambda s: (-np.log(s), -1.0 / s, 1.0 / s**2)
    if isinstance(internal, PowerInternal):
        m = float(internal.m)
        return lambda s: (s ** (1.0 - m) / (m - 1.0), -(s ** (-m)), m * s ** (-m - 1.0))
    raise TypeError(f"unsupported internal energy {type(internal).__name__}")


def polynomial_kernel(kernel: Kernel) -> tuple[float, float] | None:
    r"""``(α, β)`` when :math:`w(r)=\alpha r+\beta r^2/2` (``Quadratic(c)``: β=c; ``Newtonian(1)``:
    α=-1; ``PowerLaw(1, c)``: α=c; ``PowerLaw(2, c)``: β=c; sums add), else ``None``."""
    if isinstance(kernel, KernelSum):
        parts = [polynomial_kernel(k) for k in kernel.parts]
        if any(p is None for p in parts):
            return None
        return sum(p[0] for p in parts), sum(p[1] for p in parts)  # type: ignore[index]
    if isinstance(kernel, Quadratic):
        return 0.0, float(kernel.c)
    if isinstance(kernel, Newtonian) and kernel.d == 1:
        return -1.0, 0.0
    if isinstance(kernel, PowerLaw) and float(kernel.a) in (1.0, 2.0):
        return (float(kernel.c), 0.0) if float(kernel.a) == 1.0 else (0.0, float(kernel.c))
    return None


def radial_derivatives(kernel: Kernel, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r""":math:`(w, w', w'')(r)` of a radial kernel :math:`W(z)=w(|z|)` at distances ``r`` > 0 (any
    shape, float64): closed forms for ``Quadratic``, ``PowerLaw``, ``Newtonian`` (1-D
    expressions of :math:`-r`, :math:`-\ln r`, :math:`r^{2-d}/(d-2)`), sums term by term, and
    torch autograd on ``kernel.of_distance`` otherwise."""
    if isinstance(kernel, KernelSum):
        parts = [radial_derivatives(k, r) for k in kernel.parts]
        return tuple(sum(p[i] for p in parts) for i in range(3))  # type: ignore[return-value]
    if isinstance(kernel, Quadratic):
        c = float(kernel.c)
        return 0.5 * c * r**2, c * r, np.full_like(r, c)
    if isinstance(kernel, PowerLaw):
        a, c = float(kernel.a), float(kernel.c)
        return c * r**a / a, c * r ** (a - 1.0), c * (a - 1.0) * r ** (a - 2.0)
    if isinstance(kernel, Newtonian):
        d = kernel.d
        if d == 1:
            return -r, -np.ones_like(r), np.zeros_like(r)
        if d == 2:
            return -np.log(r), -1.0 / r, 1.0 / r**2
        return r ** (2.0 - d) / (d - 2.0), -(r ** (1.0 - d)), (d - 1.0) * r ** (-float(d))
    with torch.enable_grad():
        t = torch.from_numpy(np.ascontiguousarray(r, dtype=np.float64)).requires_grad_(True)
        w = kernel.of_distance(t)
        (w1,) = torch.autograd.grad(w.sum(), t, create_graph=True)
        (w2,) = torch.autograd.grad(w1.sum(), t)
    return w.detach().numpy(), w1.detach().numpy(), w2.numpy()


@dataclass
class _PairInteraction:
    r"""A general radial interaction :math:`\frac{\Delta q^2}2\sum_{i\ne j}w(|x_i-x_j|)` by chunked
    pair sums (:math:`O(N^2)` time, :math:`O(\text{chunk})` memory)."""

    kernel: Kernel

    def _rows(self, n: int) -> int:
        return max(1, _PAIR_CHUNK // max(n, 1))

    def value_grad_diag(
        self, x: np.ndarray, dq: float
    ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray | None]:
        """Energy, gradient (N,), Hessian diagonal (N,) and the w'' matrix when N is small."""
        n = x.size
        value, grad, diag = 0.0, np.zeros(n), np.zeros(n)
        keep = n <= _DENSE_HESSIAN_MAX
        curvature = np.empty((n, n)) if keep else None
        rows = self._rows(n)
        for s in range(0, n, rows):
            z = x[s : s + rows, None] - x[None, :]
            r = np.abs(z)
            idx = np.arange(z.shape[0])
            r[idx, s + idx] = 1.0
            w, w1, w2 = radial_derivatives(self.kernel, r)
            w[idx, s + idx] = w1[idx, s + idx] = w2[idx, s + idx] = 0.0
            value += 0.5 * dq**2 * w.sum()
            grad[s : s + rows] = dq**2 * (w1 * np.sign(z)).sum(axis=1)
            diag[s : s + rows] = dq**2 * w2.sum(axis=1)
            if curvature is not None:
                curvature[s : s + rows] = w2
        return value, grad, diag, curvature

    def value(self, x: np.ndarray, dq: float) -> float:
        n, total = x.size, 0.0
        rows = self._rows(n)
        for s in range(0, n, rows):
            r = np.abs(x[s : s + rows, None] - x[None, :])
            idx = np.arange(r.shape[0])
            r[idx, s + idx] = 1.0
            w = radial_derivatives(self.kernel, r)[0]
            w[idx, s + idx] = 0.0
            total += 0.5 * dq**2 * w.sum()
        return total

    def off_diagonal_matvec(
        self, x: np.ndarray, v: np.ndarray, dq: float, curvature: np.ndarray | None
    ) -> np.ndarray:
        r"""The off-diagonal part of :math:`H^W` applied to ``v``: :math:`-\Delta q^2\sum_{j\ne k}
        w''(|x_k-x_j|)v_j` (``curvature``: the w'' matrix with zero diagonal, or ``None``)."""
        if curvature is not None:
            return -(dq**2) * (curvature @ v)
        n, out = x.size, np.empty(x.size)
        rows = self._rows(n)
        for s in range(0, n, rows):
            r = np.abs(x[s : s + rows, None] - x[None, :])
            idx = np.arange(r.shape[0])
            r[idx, s + idx] = 1.0
            w2 = radial_derivatives(self.kernel, r)[2]
            w2[idx, s + idx] = 0.0
            out[s : s + rows] = -(dq**2) * (w2 @ v)
        return out


class QuantileEnergy:
    r"""The discrete energy :math:`E_N` of sorted equal-mass particles (module docstring), with its
    gradient and the pieces of its Hessian. ``walls``: ``(a, b)`` or ``None``."""

    def __init__(self, energy: Energy, n: int, walls: tuple[float, float] | None):
        self.energy, self.n, self.dq, self.walls = energy, n, 1.0 / n, walls
        self.profile = None if energy.internal is None else internal_profile(energy.internal)
        self.has_potential = bool(energy.potentials)
        self.alpha, self.beta = 0.0, 0.0
        self.pairs: list[_PairInteraction] = []
        for inter in energy.interactions:
            poly = polynomial_kernel(inter.kernel)
            if poly is None:
                self.pairs.append(_PairInteraction(inter.kernel))
            else:
                self.alpha += poly[0]
                self.beta += poly[1]
        self.rank = 2.0 * np.arange(1, n + 1) - n - 1.0  # 2i - N - 1

    # -- gaps
    def gaps(self, x: np.ndarray) -> np.ndarray:
        r"""Scaled spacings: :math:`(x_{i+1}-x_i)/\Delta q` (N−1,), then with walls
        :math:`(x_1-a)/(\Delta q/2)` and :math:`(b-x_N)/(\Delta q/2)` appended."""
        s = np.diff(x) / self.dq
        if self.walls is None:
            return s
        a, b = self.walls
        return np.concatenate([s, [2.0 * (x[0] - a) / self.dq, 2.0 * (b - x[-1]) / self.dq]])

    def raw_gaps(self, x: np.ndarray) -> np.ndarray:
        """Unscaled spacings, wall gaps appended (what must stay positive)."""
        g = np.diff(x)
        if self.walls is None:
            return g
        a, b = self.walls
        return np.concatenate([g, [x[0] - a, b - x[-1]]])

    def _potential(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.energy.V(torch.from_numpy(x.reshape(-1, 1))).numpy()

    def _grad_V(self, x: np.ndarray) -> np.ndarray:
        return self.energy.grad_V(torch.from_numpy(x.reshape(-1, 1))).detach().numpy().reshape(-1)

    def value(self, x: np.ndarray) -> float:
        r""":math:`E_N(x)`."""
        dq, total = self.dq, 0.0
        if self.has_potential:
            total += dq * float(self._potential(x).sum())
        if self.profile is not None:
            s = self.gaps(x)
            u = self.profile(s)[0]
            n_in = self.n - 1
            total += dq * float(u[:n_in].sum()) + 0.5 * dq * float(u[n_in:].sum())
        if self.alpha or self.beta:
            sx = float(x.sum())
            total += dq**2 * (
                self.alpha * float(self.rank @ x) + 0.5 * self.beta * (self.n * float(x @ x) - sx**2)
            )
        for pair in self.pairs:
            total += pair.value(x, dq)
        return total

    def derivatives(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        r"""Gradient :math:`\nabla E_N` (N,), the tridiagonal local Hessian as banded rows
        ``(3, N)`` (``solve_banded`` layout, without the proximal term), and the dense pieces
        ``[(pair, curvature)]`` of general kernels (their diagonal is already in the bands)."""
        n, dq = self.n, self.dq
        grad = np.zeros(n)
        bands = np.zeros((3, n))
        if self.has_potential:
            grad += dq * self._grad_V(x)
            step = np.finfo(np.float64).eps ** (1.0 / 3.0) * np.maximum(1.0, np.abs(x))
            second = (self._grad_V(x + step) - self._grad_V(x - step)) / (2.0 * step)
            bands[1] += dq * second
        if self.profile is not None:
            s = self.gaps(x)
            _, du, d2u = self.profile(s)
            n_in = n - 1
            # d/dx_k of dq Σ Ũ((x_{i+1}-x_i)/dq) = Ũ'(s_{k-1}) - Ũ'(s_k)
            grad[1:] += du[:n_in]
            grad[:-1] -= du[:n_in]
            c = d2u[:n_in] / dq
            bands[1, 1:] += c
            bands[1, :-1] += c
            bands[0, 1:] -= c  # super-diagonal
            bands[2, :-1] -= c  # sub-diagonal
            if self.walls is not None:
                # (dq/2) Ũ(2(x_1-a)/dq) and (dq/2) Ũ(2(b-x_N)/dq)
                grad[0] += du[n_in]
                grad[-1] -= du[n_in + 1]
                bands[1, 0] += 2.0 * d2u[n_in] / dq
                bands[1, -1] += 2.0 * d2u[n_in + 1] / dq
        if self.alpha or self.beta:
            grad += dq**2 * (self.alpha * self.rank + self.beta * (n * x - x.sum()))
            bands[1] += dq**2 * self.beta * n
        dense = []
        for pair in self.pairs:
            _, g, diag, curvature = pair.value_grad_diag(x, dq)
            grad += g
            bands[1] += diag
            dense.append((pair, curvature))
        return grad, bands, dense

    def solve(self, x: np.ndarray, bands: np.ndarray, dense: list, rhs: np.ndarray) -> tuple[np.ndarray, int]:
        r"""Solve :math:`Hd = \text{rhs}`, :math:`H` = ``bands`` :math:`-\Delta q^2\beta\mathbf1\mathbf1^\top`
        + the off-diagonal dense parts: banded solve, Sherman–Morrison for the rank one, PCG for
        general kernels. Returns ``(d, linear iterations)``."""
        dq, n = self.dq, self.n
        gamma = dq**2 * self.beta

        def base_solve(b: np.ndarray) -> np.ndarray:
            y = scipy.linalg.solve_banded((1, 1), bands, b, check_finite=False)
            if gamma == 0.0:
                return y
            ones_solve = scipy.linalg.solve_banded((1, 1), bands, np.ones(n), check_finite=False)
            return y + gamma * ones_solve * y.sum() / (1.0 - gamma * ones_solve.sum())

        if not dense:
            return base_solve(rhs), 1

        def matvec(v: np.ndarray) -> np.ndarray:
            out = scipy.linalg.blas.dgbmv(n, n, 1, 1, 1.0, bands, v) - gamma * v.sum()
            for pair, curvature in dense:
                out += pair.off_diagonal_matvec(x, v, dq, curvature)
            return out

        count = [0]

        def precondition(v: np.ndarray) -> np.ndarray:
            count[0] += 1
            return base_solve(v)

        op = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        prec = scipy.sparse.linalg.LinearOperator((n, n), matvec=precondition, dtype=np.float64)
        d, _ = scipy.sparse.linalg.cg(op, rhs, rtol=1e-10, maxiter=200, M=prec)
        return d, count[0]


# ----------------------------------------------------------------------------------------------
# The solver


@dataclass
class StepResult:
    """One JKO step: the new particles, Newton iterations, the final objective and whether the
    Newton tolerance was met."""

    x: np.ndarray
    iterations: int
    objective: float
    converged: bool


def jko_step(
    model: QuantileEnergy, x_prev: np.ndarray, tau: float, tol: float, max_iter: int, fraction: float
) -> StepResult:
    r"""One JKO step :math:`\arg\min_x \frac{\Delta q}{2\tau}|x-x^n|^2+E_N(x)` by damped Newton from
    :math:`x^n` (module docstring: banded/rank-one/PCG Newton direction, fraction-to-boundary
    step limit keeping the order, Armijo backtracking). ``x_prev`` (N,) sorted float64."""
    dq = model.dq
    prox = dq / tau
    x = x_prev.copy()
    e = model.value(x)
    phi = e
    for it in range(1, max_iter + 1):
        grad_e, bands, dense = model.derivatives(x)
        grad = grad_e + prox * (x - x_prev)
        if np.max(np.abs(grad)) / dq <= tol:
            return StepResult(x, it - 1, phi, True)
        bands = bands.copy()
        bands[1] += prox
        d, _ = model.solve(x, bands, dense, -grad)
        slope = float(grad @ d)
        if not np.all(np.isfinite(d)) or slope >= 0.0:
            d = -grad / prox
            slope = float(grad @ d)
        # fraction to the boundary: no gap shrinks by more than `fraction`
        gaps = model.raw_gaps(x)
        change = model.raw_gaps(d) if model.walls is None else np.concatenate([np.diff(d), [d[0], -d[-1]]])
        shrinking = change < 0
        alpha = 1.0
        if np.any(shrinking):
            alpha = min(1.0, fraction * float(np.min(gaps[shrinking] / -change[shrinking])))
        if np.max(np.abs(alpha * d)) <= 4e-16 * max(1.0, float(np.max(np.abs(x)))):
            return StepResult(x, it, phi, True)
        if -slope <= 1e-14 * max(1.0, abs(phi)):
            # Newton region, predicted decrease at the round-off of Φ: Armijo cannot judge it,
            # take the (limited) Newton step; the gradient test above decides convergence.
            x_try = x + alpha * d
            phi_try = model.value(x_try) + 0.5 * prox * float((x_try - x_prev) @ (x_try - x_prev))
        else:
            while True:
                x_try = x + alpha * d
                phi_try = model.value(x_try) + 0.5 * prox * float((x_try - x_prev) @ (x_try - x_prev))
                if math.isfinite(phi_try) and phi_try <= phi + 1e-4 * alpha * slope:
                    break
                if alpha < 1e-12:
                    return StepResult(x, it, phi, False)
                alpha *= 0.5
        x, phi = x_try, phi_try
    grad_e, _, _ = model.derivatives(x)
    grad = grad_e + prox * (x - x_prev)
    return StepResult(x, max_iter, phi, bool(np.max(np.abs(grad)) / dq <= tol))


class QuantileJKO(Solver):
    """The 1-D quantile (Lagrangian) JKO scheme; scheme, walls and output in the module docstring.

    Output: one :class:`ParticleSnapshot` (``x`` (N, 1), ``log_rho`` from the spacings) per
    ``problem.times``, one :class:`StepRecord` per JKO step with the discrete energy :math:`E_N`
    (``energy_stderr`` 0: no sampling), the Newton iterations and the JKO objective as ``loss``.
    """

    name = "quantile-jko"
    Config = QuantileJKOConfig
    citation = r"""@article{jordan1998variational,
  title   = {The Variational Formulation of the {F}okker--{P}lanck Equation},
  author  = {Jordan, Richard and Kinderlehrer, David and Otto, Felix},
  journal = {SIAM Journal on Mathematical Analysis},
  volume  = {29}, number = {1}, pages = {1--17}, year = {1998}
}
@article{gosse2006lagrangian,
  title   = {Lagrangian Numerical Approximations to One-Dimensional Convolution-Diffusion Equations},
  author  = {Gosse, Laurent and Toscani, Giuseppe},
  journal = {SIAM Journal on Scientific Computing},
  volume  = {28}, number = {4}, pages = {1203--1227}, year = {2006}
}
@article{blanchet2008convergence,
  title   = {Convergence of the Mass-Transport Steepest Descent Scheme for the Subcritical
             {P}atlak--{K}eller--{S}egel Model},
  author  = {Blanchet, Adrien and Calvez, Vincent and Carrillo, Jos{\'e} A.},
  journal = {SIAM Journal on Numerical Analysis},
  volume  = {46}, number = {2}, pages = {691--721}, year = {2008}
}
@article{matthes2014convergence,
  title   = {Convergence of a Variational {L}agrangian Scheme for a Nonlinear Drift Diffusion Equation},
  author  = {Matthes, Daniel and Osberger, Horst},
  journal = {ESAIM: Mathematical Modelling and Numerical Analysis},
  volume  = {48}, number = {3}, pages = {697--726}, year = {2014}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"n_particles": 500, "tau_factor": 1.0},
        "quick": {"n_particles": 2000, "tau_factor": 0.25},
        "large": {"n_particles": 10000, "tau_factor": 0.05},
    }

    config: QuantileJKOConfig

    def supports(self, problem: Problem) -> Support:
        if problem.dim != 1:
            return f"the quantile JKO scheme is one-dimensional; this problem has d={problem.dim}"
        if problem.mobility.kind != "wasserstein":
            return f"the quantile JKO scheme needs the Wasserstein mobility, not {problem.mobility.kind!r}"
        internal = problem.energy.internal
        if internal is not None and not isinstance(internal, Entropy | PowerInternal):
            return f"internal energy {type(internal).__name__} is not supported (Entropy, PowerInternal only)"
        if self.config.walls == "box" and problem.box is None:
            return "walls='box' needs a problem box"
        return True

    def tau(self, problem: Problem) -> float:
        """The JKO step: ``config.tau``, or ``problem.dt * config.tau_factor``."""
        return self.config.tau if self.config.tau is not None else problem.dt * self.config.tau_factor

    def walls(self, problem: Problem) -> tuple[float, float] | None:
        """The wall positions ``(a, b)`` or ``None`` (``config.walls``, :func:`has_walls`)."""
        mode = self.config.walls
        if mode == "none" or problem.box is None or (mode == "auto" and not has_walls(problem)):
            return None
        return float(problem.box.low[0]), float(problem.box.high[0])

    def _snapshot(self, t: float, x: np.ndarray) -> ParticleSnapshot:
        xt = torch.from_numpy(x.copy()).reshape(-1, 1)
        return ParticleSnapshot(t=t, x=xt, log_rho=torch.from_numpy(log_density_from_spacings(x)))

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """Integrate from ``problem.initial`` (quantiles at :math:`q_i=(i-\\tfrac12)/N`) to
        ``problem.times[-1]`` with JKO steps of at most ``tau``; snapshots at ``problem.times``."""
        reason = self.supports(problem)
        if reason is not True:
            raise ValueError(f"quantile-jko does not support {problem.name}: {reason}")
        config = self.config
        n = config.n_particles
        walls = self.walls(problem)
        model = QuantileEnergy(problem.energy, n, walls)
        x = initial_quantiles(problem.initial, n, problem.box, panels=config.quantile_panels)
        if walls is not None:
            x = np.clip(
                x, walls[0] + 1e-3 / n * (walls[1] - walls[0]), walls[1] - 1e-3 / n * (walls[1] - walls[0])
            )
        if np.any(np.diff(x) <= 0):
            raise ValueError("the initial quantiles are not strictly increasing (atoms in the initial law?)")
        tau_max = self.tau(problem)
        snapshots = [self._snapshot(0.0, x)]
        steps: list[StepRecord] = []
        t, n_steps, newton_total, failures, uniform = 0.0, 0, 0, 0, True
        for t_next in problem.times[1:]:
            k, tau = equal_steps(t_next - t, tau_max)
            uniform = uniform and abs(tau - tau_max) <= 1e-9 * tau_max
            for j in range(k):
                ctx.check_budget()
                result = jko_step(
                    model, x, tau, config.newton_tol, config.max_newton, config.fraction_to_boundary
                )
                x = result.x
                n_steps += 1
                newton_total += result.iterations
                failures += not result.converged
                t = t_next if j == k - 1 else t + tau
                steps.append(
                    StepRecord(
                        t=t,
                        tau=tau,
                        energy=model.value(x),
                        energy_stderr=0.0,
                        iterations=result.iterations,
                        loss=result.objective,
                    )
                )
                ctx.progress(min(1000, int(1000 * t / problem.final_time)), 1000)
            if not np.all(np.isfinite(x)):
                raise NonFiniteOutput(f"quantile-jko: non-finite particles at t={t_next:.6g}")
            snapshots.append(self._snapshot(t_next, x))
        info: dict[str, float | int | str] = {
            "scheme": "quantile-jko/newton",
            "n_particles": n,
            "n_steps": n_steps,
            "tau": tau_max,
            "walls": "none" if walls is None else f"[{walls[0]:.6g}, {walls[1]:.6g}]",
            "newton_iterations": newton_total,
            "newton_unconverged_steps": failures,
        }
        return Trajectory(snapshots=snapshots, steps=steps, jko_tau=tau_max if uniform else None, info=info)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`QuantileJKO` as ``quantile-jko``."""
    registry.add(QuantileJKO)
