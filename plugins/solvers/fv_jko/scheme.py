r"""The Cancès–Gallouët–Todeschi upwind two-point-flux finite-volume JKO step.

Reference: C. Cancès, T. O. Gallouët, G. Todeschi, *A variational finite volume scheme for
Wasserstein gradient flows*, Numer. Math. 146 (2020) 437–480 (CGT below).

**Discrete JKO step.** On a uniform Cartesian :class:`~wgfbench.grid.Grid` with cells :math:`K`
(volume :math:`m = |K|`) and interior faces :math:`\sigma = K|L` with transmissivity
:math:`a_\sigma = |\sigma|/d_\sigma = |K|/h_i^2` (axis :math:`i`; no-flux boundary: boundary faces
carry nothing), one step from :math:`\rho^n` with step :math:`\tau` is the saddle point

.. math:: \min_{\rho}\max_{\varphi}\ -\sum_K m\,\varphi_K(\rho_K-\rho^n_K)
          - \frac\tau2\sum_\sigma a_\sigma M_\sigma(\rho;\varphi)(\varphi_K-\varphi_L)^2
          + \mathcal E_h(\rho)

(the dual, Benamou–Brenier-type form of CGT's upwind discrete transport cost; the sup over
:math:`\varphi` is the discrete :math:`W_2^2/2\tau`). Its optimality system, obtained by
differentiating in :math:`\varphi_K` (times :math:`-1/\tau`) and in :math:`\rho_K` (divided by
:math:`-m`), is exactly what Newton solves (sign convention checked by the tests against a loop
implementation and against a finite-difference Jacobian):

.. math:: R_{\varphi,K} = m\frac{\rho_K-\rho^n_K}{\tau} + \sum_{L} a_\sigma M_\sigma(\varphi_K-\varphi_L) = 0,

.. math:: R_{\rho,K} = \varphi_K + \frac{\tau}{2m}\sum_\sigma a_\sigma
          \frac{\partial M_\sigma}{\partial\rho_K}(\varphi_K-\varphi_L)^2
          - \big[U'(\rho_K) + V_K + (W*\rho)_K\big] = 0,

:math:`\varphi` the (negative) Kantorovich potential: the discrete velocity is
:math:`-\nabla\varphi`, so mass leaves :math:`K` towards neighbours with smaller
:math:`\varphi`, and :math:`\varphi = \delta\mathcal E/\delta\rho` to first order in
:math:`\tau`. Here :math:`\mathcal E_h` is :class:`~wgfbench.grid.GridEnergy`.

**Face mobility.** Wasserstein mobility (CGT): upwind :math:`M_\sigma = \rho_{\uparrow}`, the
density of the cell with the larger :math:`\varphi` (the cell mass leaves), so
:math:`\partial M_\sigma/\partial\rho_K = 1` on the faces out of :math:`K` and the second sum in
:math:`R_\rho` is :math:`\sum_{L:\varphi_K>\varphi_L}a_\sigma(\varphi_K-\varphi_L)^2`, as in CGT.
Nonlinear mobility :math:`M(\rho) = \rho\,g(\rho)` with :math:`g\ge0` non-increasing and
:math:`g(\rho_{\max}) = 0` (e.g. :math:`\rho(1-\rho)`, :math:`p(1-\mu p)`): the two-point upwind
mobility :math:`M_\sigma = \rho_\uparrow\,g(\rho_\downarrow)` (source cell up, receiving cell
down). It is non-decreasing in :math:`\rho_\uparrow` and non-increasing in
:math:`\rho_\downarrow`, consistent (:math:`M_\sigma = M(\rho)` when both agree), and keeps
:math:`0\le\rho\le\rho_{\max}`: a cell receives nothing once it is full
(:math:`g(\rho_\downarrow)=0`) and, from the upwind :math:`\rho_\uparrow` factor,
:math:`\rho_K(1 + \frac\tau m\sum_{\rm out}a_\sigma g(\rho_L)(\varphi_K-\varphi_L)) = \rho^n_K +
\text{inflow} > 0`. Then :math:`\partial M_\sigma/\partial\rho_\uparrow = g(\rho_\downarrow)` and
:math:`\partial M_\sigma/\partial\rho_\downarrow = \rho_\uparrow g'(\rho_\downarrow)`;
:math:`g = M/\rho` and its derivatives come from ``problem.mobility.M`` by autograd.

**Newton.** Unknowns :math:`(\rho,\varphi)`, :math:`2N` of them. With :math:`C =
\partial R_\rho/\partial\varphi - I` (sparse, two-point) the exact Jacobian blocks are
:math:`\partial R_\varphi/\partial\rho = (I + C)^\top D/\tau` (:math:`D = m I`; the symmetry of
a Lagrangian's Hessian), :math:`\partial R_\varphi/\partial\varphi = L_M` (the weighted graph
Laplacian, weights :math:`a_\sigma M_\sigma`) and :math:`\partial R_\rho/\partial\rho = -H -
\mathcal W` with :math:`H` diagonal (:math:`U''(\rho_K)` plus, for nonlinear mobility, the
diagonal :math:`g''` curvature term) and :math:`\mathcal W` the dense interaction operator.
Eliminating :math:`\delta\rho = H^{-1}((I+C)\delta\varphi + R_\rho)` leaves one N×N
**symmetric positive definite** system per iteration (the Schur complement)

.. math:: \big[(I+C)^\top \tfrac{D}{\tau H}(I+C) + L_M\big]\delta\varphi
          = -R_\varphi - (I+C)^\top\tfrac{D}{\tau H}R_\rho,

solved by sparse LU (scipy, CPU) or Jacobi-preconditioned CG (torch, matrix-free, GPU). With no
internal energy (:math:`H=0`, pure aggregation) the Jacobian is block triangular instead:
:math:`(I+C)\delta\varphi = -R_\rho`, then :math:`(I+C)^\top\frac D\tau\delta\rho = -R_\varphi
- L_M\delta\varphi` (two sparse LU solves, or BiCGStab in torch).

*Interaction.* The residual is **fully implicit**: :math:`(W*\rho)_K` at the current Newton
iterate (FFT, :meth:`GridEnergy.convolve`), so the converged step is CGT's implicit scheme and
keeps its energy decay; only the dense block :math:`\mathcal W` is left out of the Jacobian
(lagged-Jacobian Newton). Convergence is then linear (contraction factor of order
:math:`\tau\|\mathcal W\|`) instead of quadratic; the iteration count is in the step statistics.
Off-diagonal :math:`g'` couplings of the :math:`\rho\rho` block (nonlinear mobility) are left out
of the Jacobian the same way.

*Positivity (step halving).* A Newton update :math:`(\rho,\varphi) + \alpha(\delta\rho,\delta\varphi)`
starts at :math:`\alpha = 1` and is halved until :math:`\rho > 0` (and :math:`g(\rho) > 0`) and
the residual decreases (:math:`\max(r_\varphi, r_\rho)` below, Armijo factor
:math:`1 - 10^{-4}\alpha`). Convergence: :math:`r_\varphi = \tau\max_K|R_{\varphi,K}|/(m\max\rho^n)`
and :math:`r_\rho = \max_K|R_{\rho,K}|/(1+\max|\varphi|)` both below ``tol``. Failure (no
convergence in ``max_newton`` iterations or too many halvings) raises :class:`NewtonFailure`; the
solver then halves :math:`\tau` and retries.

*Mass.* The columns of :math:`(I+C)^\top`, :math:`L_M` and the flux divergence sum to zero, so every
Newton update conserves :math:`\sum_K m\rho_K` up to the accuracy of the linear solve (round-off for
LU; the CG tolerance for torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

from wgfbench.errors import WgfbenchError
from wgfbench.grid import Grid, GridEnergy

Backend = Literal["scipy", "torch"]


class NewtonFailure(WgfbenchError, RuntimeError):
    """Newton on the optimality system did not converge (the caller halves :math:`\\tau`)."""


@dataclass(frozen=True)
class StepStats:
    """Counts of one JKO step: Newton iterations, linear solves (LU solves, or Krylov solves for
    torch), Krylov iterations (0 for LU), damping halvings, the step ``tau`` and the final
    scaled residual."""

    newton_iterations: int
    linear_solves: int
    tau: float
    krylov_iterations: int = 0
    halvings: int = 0
    residual: float = 0.0


@dataclass(frozen=True)
class Faces:
    """The interior faces of a grid as flat cell-index pairs ``left`` < ``right`` (int64, (F,))
    with transmissivities ``a`` = |σ|/d_σ = |K|/h_i² (float, (F,))."""

    left: Tensor
    right: Tensor
    a: Tensor

    @classmethod
    def of(cls, grid: Grid, dtype: torch.dtype, device: torch.device) -> Faces:
        idx = torch.arange(grid.n_cells, device=device).reshape(grid.shape)
        lefts, rights, weights = [], [], []
        for axis, (n, h) in enumerate(zip(grid.shape, grid.h, strict=True)):
            if n < 2:
                continue
            lefts.append(idx.narrow(axis, 0, n - 1).reshape(-1))
            rights.append(idx.narrow(axis, 1, n - 1).reshape(-1))
            count = lefts[-1].numel()
            weights.append(torch.full((count,), grid.cell_volume / h**2, dtype=dtype, device=device))
        return cls(torch.cat(lefts), torch.cat(rights), torch.cat(weights))


class FaceMobility:
    r"""The face mobility :math:`M_\sigma = \rho_\uparrow\,g(\rho_\downarrow)` (module docstring):
    ``g`` ≡ 1 for the Wasserstein mobility, ``g = M/ρ`` for a nonlinear ``M``."""

    def __init__(self, M: Callable[[Tensor], Tensor] | None = None):
        self.M = M

    @property
    def linear(self) -> bool:
        return self.M is None

    def g(self, rho: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r""":math:`g(\rho)`, :math:`g'(\rho)`, :math:`g''(\rho)` elementwise (autograd through
        ``M``); ``rho`` > 0, any shape."""
        if self.M is None:
            one = torch.ones_like(rho)
            return one, torch.zeros_like(rho), torch.zeros_like(rho)
        with torch.enable_grad():
            r = rho.detach().requires_grad_(True)
            g = self.M(r) / r
            (dg,) = torch.autograd.grad(g.sum(), r, create_graph=True)
            (d2g,) = torch.autograd.grad(dg.sum(), r, allow_unused=True)
        d2g = torch.zeros_like(rho) if d2g is None else d2g
        return g.detach(), dg.detach(), d2g.detach()


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, diag: Tensor, rtol: float, max_iter: int
) -> tuple[Tensor, int]:
    r"""Jacobi-preconditioned conjugate gradients for an SPD ``matvec``: :math:`x` with
    :math:`\|Ax-b\|\le\text{rtol}\,\|b\|` (Hestenes & Stiefel 1952). ``b``, ``diag``: (N,).
    Returns (x, iterations)."""
    x = torch.zeros_like(b)
    r = b.clone()
    bnorm = float(torch.linalg.vector_norm(b))
    if bnorm == 0:
        return x, 0
    z = r / diag
    p = z.clone()
    rz = torch.dot(r, z)
    for it in range(1, max_iter + 1):
        Ap = matvec(p)
        alpha = rz / torch.dot(p, Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        if float(torch.linalg.vector_norm(r)) <= rtol * bnorm:
            return x, it
        z = r / diag
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    raise NewtonFailure(f"CG did not reach rtol={rtol:g} in {max_iter} iterations")


def bicgstab(
    matvec: Callable[[Tensor], Tensor], b: Tensor, diag: Tensor, rtol: float, max_iter: int
) -> tuple[Tensor, int]:
    r"""Jacobi-(right-)preconditioned BiCGStab (van der Vorst 1992) for a nonsymmetric
    ``matvec``: :math:`\|Ax-b\|\le\text{rtol}\,\|b\|`. ``b``, ``diag``: (N,). Returns (x, iterations)."""
    x = torch.zeros_like(b)
    r = b.clone()
    bnorm = float(torch.linalg.vector_norm(b))
    if bnorm == 0:
        return x, 0
    r_hat = r.clone()
    rho_old = alpha = omega = torch.ones((), dtype=b.dtype, device=b.device)
    v = torch.zeros_like(b)
    p = torch.zeros_like(b)
    for it in range(1, max_iter + 1):
        rho_new = torch.dot(r_hat, r)
        beta = (rho_new / rho_old) * (alpha / omega)
        p = r + beta * (p - omega * v)
        p_hat = p / diag
        v = matvec(p_hat)
        alpha = rho_new / torch.dot(r_hat, v)
        s = r - alpha * v
        s_hat = s / diag
        t = matvec(s_hat)
        omega = torch.dot(t, s) / torch.dot(t, t)
        x = x + alpha * p_hat + omega * s_hat
        r = s - omega * t
        if float(torch.linalg.vector_norm(r)) <= rtol * bnorm:
            return x, it
        rho_old = rho_new
    raise NewtonFailure(f"BiCGStab did not reach rtol={rtol:g} in {max_iter} iterations")


class FVJKOScheme:
    r"""One upwind finite-volume JKO step on ``grid`` for ``grid_energy`` (module docstring).

    ``mobility_M``: ``None`` (Wasserstein) or the nonlinear :math:`M(\rho)`. ``backend``:
    ``"scipy"`` (sparse LU of the Schur complement, float64 CPU) or ``"torch"`` (matrix-free
    CG/BiCGStab on ``grid_energy.device``). :meth:`step` maps a density (shape ``grid.shape``,
    ``grid_energy.dtype``/``device``) and ``tau`` to the next density and :class:`StepStats`.
    """

    def __init__(
        self,
        grid: Grid,
        grid_energy: GridEnergy,
        mobility_M: Callable[[Tensor], Tensor] | None = None,
        backend: Backend = "scipy",
        tol: float = 1e-10,
        max_newton: int = 60,
        max_halvings: int = 30,
        krylov_rtol: float = 1e-13,
        krylov_max_iter: int = 20000,
    ):
        if backend not in ("scipy", "torch"):
            raise ValueError(f"unknown backend {backend!r}")
        self.grid, self.energy, self.backend = grid, grid_energy, backend
        self.mobility = FaceMobility(mobility_M)
        self.tol, self.max_newton, self.max_halvings = tol, max_newton, max_halvings
        self.krylov_rtol, self.krylov_max_iter = krylov_rtol, krylov_max_iter
        self.dtype, self.device = grid_energy.dtype, grid_energy.device
        self.m = grid.cell_volume
        self.faces = Faces.of(grid, self.dtype, self.device)
        self.n = grid.n_cells
        #: The potential φ of the last converged step (shape ``grid.shape``), for warm starts.
        self.last_phi: Tensor | None = None

    # ------------------------------------------------------------------ residuals and faces

    def _face_state(self, rho: Tensor, phi: Tensor) -> dict[str, Tensor]:
        """Per-face upwind quantities for flat ``rho``, ``phi`` (N,): up/down indices,
        Δ = φ_up − φ_down ≥ 0, M_σ, ∂M/∂ρ_up, ∂M/∂ρ_down, g''(ρ_down)."""
        f = self.faces
        jump = phi[f.left] - phi[f.right]
        left_up = jump >= 0
        up = torch.where(left_up, f.left, f.right)
        down = torch.where(left_up, f.right, f.left)
        delta = jump.abs()
        rho_up, rho_down = rho[up], rho[down]
        g, dg, d2g = self.mobility.g(rho_down)
        return {
            "up": up,
            "down": down,
            "delta": delta,
            "M": rho_up * g,
            "dM_up": g,
            "dM_down": rho_up * dg,
            "d2M_down": rho_up * d2g,
        }

    def _scatter(self, index: Tensor, values: Tensor) -> Tensor:
        return torch.zeros(self.n, dtype=self.dtype, device=self.device).index_add_(0, index, values)

    def residuals(
        self, rho: Tensor, phi: Tensor, rho_old: Tensor, tau: float, state: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        r""":math:`(R_\varphi, R_\rho)` (module docstring) at flat ``rho``, ``phi``, ``rho_old``
        (N,); also returns the face state."""
        if state is None:
            state = self._face_state(rho, phi)
        a = self.faces.a
        flux = a * state["M"] * state["delta"]  # up → down
        r_phi = (
            self.m * (rho - rho_old) / tau
            + self._scatter(state["up"], flux)
            - self._scatter(state["down"], flux)
        )
        q = 0.5 * tau / self.m * a * state["delta"] ** 2
        kinetic = self._scatter(state["up"], q * state["dM_up"]) + self._scatter(
            state["down"], q * state["dM_down"]
        )
        variation = self.energy.first_variation(rho.reshape(self.grid.shape)).reshape(-1)
        return r_phi, phi + kinetic - variation, state

    def _hessian_diag(self, rho: Tensor, state: dict[str, Tensor], tau: float) -> Tensor:
        """H: U''(ρ) minus the diagonal mobility curvature (τ/2m) Σ a Δ² ∂²M/∂ρ_down² (≥ 0 for g concave)."""
        internal = self.energy.internal
        H = internal.d2U(rho) if internal is not None else torch.zeros_like(rho)
        if not self.mobility.linear:
            q = 0.5 * tau / self.m * self.faces.a * state["delta"] ** 2
            H = H - self._scatter(state["down"], q * state["d2M_down"])
        return H

    def _c_coefficients(self, state: dict[str, Tensor], tau: float) -> tuple[Tensor, Tensor]:
        """Per-face entries of C: row up gets c_up·(e_up − e_down), row down gets c_down·(e_up − e_down)."""
        base = tau / self.m * self.faces.a * state["delta"]
        return base * state["dM_up"], base * state["dM_down"]

    # ------------------------------------------------------------------ linear solves

    def _solve_scipy(
        self, state: dict[str, Tensor], H: Tensor, r_phi: Tensor, r_rho: Tensor, tau: float
    ) -> tuple[Tensor, Tensor, int]:
        n = self.n
        c_up, c_down = (c.cpu().numpy() for c in self._c_coefficients(state, tau))
        up, down = state["up"].cpu().numpy(), state["down"].cpu().numpy()
        w = (self.faces.a * state["M"]).cpu().numpy()
        rows = np.concatenate([up, up, down, down])
        cols = np.concatenate([up, down, up, down])
        IC = sp.csr_matrix((np.concatenate([c_up, -c_up, c_down, -c_down]), (rows, cols)), shape=(n, n))
        IC = IC + sp.identity(n, format="csr")
        L = sp.csr_matrix((np.concatenate([w, -w, -w, w]), (rows, cols)), shape=(n, n))
        Rp, Rr, Hn = r_phi.cpu().numpy(), r_rho.cpu().numpy(), H.cpu().numpy()
        as_t = lambda x: torch.from_numpy(x).to(self.dtype).to(self.device)  # noqa: E731
        if self.energy.internal is not None:
            Dg = self.m / (tau * Hn)
            S = (IC.T @ sp.diags(Dg) @ IC + L).tocsc()
            rhs = -Rp - IC.T @ (Dg * Rr)
            dphi = spla.splu(S, permc_spec="MMD_AT_PLUS_A").solve(rhs)
            drho = (IC @ dphi + Rr) / Hn
            return as_t(drho), as_t(dphi), 1
        dphi = spla.splu(IC.tocsc()).solve(-Rr)
        drho = spla.splu(IC.T.tocsc()).solve(-Rp - L @ dphi) * tau / self.m
        return as_t(drho), as_t(dphi), 2

    def _ic(self, v: Tensor, c_up: Tensor, c_down: Tensor, state: dict[str, Tensor]) -> Tensor:
        """(I + C) v, matrix-free."""
        jump = v[state["up"]] - v[state["down"]]
        return v + self._scatter(state["up"], c_up * jump) + self._scatter(state["down"], c_down * jump)

    def _ic_t(self, w: Tensor, c_up: Tensor, c_down: Tensor, state: dict[str, Tensor]) -> Tensor:
        """(I + C)ᵀ w, matrix-free."""
        s = c_up * w[state["up"]] + c_down * w[state["down"]]
        return w + self._scatter(state["up"], s) - self._scatter(state["down"], s)

    def _laplacian(self, v: Tensor, wface: Tensor, state: dict[str, Tensor]) -> Tensor:
        flux = wface * (v[state["up"]] - v[state["down"]])
        return self._scatter(state["up"], flux) - self._scatter(state["down"], flux)

    def _solve_torch(
        self, state: dict[str, Tensor], H: Tensor, r_phi: Tensor, r_rho: Tensor, tau: float
    ) -> tuple[Tensor, Tensor, int, int]:
        c_up, c_down = self._c_coefficients(state, tau)
        wface = self.faces.a * state["M"]
        up, down = state["up"], state["down"]
        # Diagonals: (I+C)_{uu} = 1 + Σ c_up, (I+C)_{dd} = 1 − Σ c_down; off-diagonal column entries
        # (I+C)_{ud} = −c_up (column d), (I+C)_{du} = c_down (column u).
        ic_diag = 1.0 + self._scatter(up, c_up) - self._scatter(down, c_down)
        lap_diag = self._scatter(up, wface) + self._scatter(down, wface)
        if self.energy.internal is not None:
            Dg = self.m / (tau * H)
            diag = (
                Dg * ic_diag**2
                + self._scatter(down, Dg[up] * c_up**2)
                + self._scatter(up, Dg[down] * c_down**2)
            )
            diag = diag + lap_diag

            def matvec(v: Tensor) -> Tensor:
                return self._ic_t(
                    Dg * self._ic(v, c_up, c_down, state), c_up, c_down, state
                ) + self._laplacian(v, wface, state)

            rhs = -r_phi - self._ic_t(Dg * r_rho, c_up, c_down, state)
            dphi, its = conjugate_gradient(matvec, rhs, diag, self.krylov_rtol, self.krylov_max_iter)
            drho = (self._ic(dphi, c_up, c_down, state) + r_rho) / H
            return drho, dphi, 1, its
        dphi, its1 = bicgstab(
            lambda v: self._ic(v, c_up, c_down, state),
            -r_rho,
            ic_diag,
            self.krylov_rtol,
            self.krylov_max_iter,
        )
        rhs = -r_phi - self._laplacian(dphi, wface, state)
        y, its2 = bicgstab(
            lambda v: self._ic_t(v, c_up, c_down, state), rhs, ic_diag, self.krylov_rtol, self.krylov_max_iter
        )
        return y * tau / self.m, dphi, 2, its1 + its2

    # ------------------------------------------------------------------ Newton

    def _merit(self, r_phi: Tensor, r_rho: Tensor, phi: Tensor, tau: float, rho_scale: float) -> float:
        r1 = float(r_phi.abs().max()) * tau / (self.m * rho_scale)
        r2 = float(r_rho.abs().max()) / (1.0 + float(phi.abs().max()))
        return max(r1, r2)

    def _admissible(self, rho: Tensor) -> bool:
        if not bool((rho > 0).all()):
            return False
        if not self.mobility.linear:
            return bool((self.mobility.g(rho)[0] > 0).all())
        return True

    def step(self, rho: Tensor, tau: float, phi0: Tensor | None = None) -> tuple[Tensor, StepStats]:
        r"""One JKO step from ``rho`` (shape ``grid.shape``, > 0) with step ``tau``: Newton on
        :math:`(R_\varphi, R_\rho) = 0` from :math:`\rho=\rho^n`, :math:`\varphi=\delta\mathcal
        E_h/\delta\rho(\rho^n)` (or ``phi0``). Returns the new density (shape ``grid.shape``) and
        :class:`StepStats`; raises :class:`NewtonFailure`."""
        shape = self.grid.shape
        rho_old = rho.reshape(-1).to(self.dtype)
        if not self._admissible(rho_old):
            raise ValueError("the FV-JKO step needs a density with rho > 0 (and g(rho) > 0)")
        rho_k = rho_old.clone()
        phi_k = (
            phi0.reshape(-1).clone()
            if phi0 is not None
            else self.energy.first_variation(rho).reshape(-1).clone()
        )
        rho_scale = float(rho_old.max())
        r_phi, r_rho, state = self.residuals(rho_k, phi_k, rho_old, tau)
        merit = self._merit(r_phi, r_rho, phi_k, tau, rho_scale)
        solves = krylov = halvings = 0
        for it in range(1, self.max_newton + 1):
            if merit <= self.tol:
                self.last_phi = phi_k.reshape(shape)
                return rho_k.reshape(shape), StepStats(it - 1, solves, tau, krylov, halvings, merit)
            H = self._hessian_diag(rho_k, state, tau)
            if self.energy.internal is not None and not bool((H > 0).all()):
                raise NewtonFailure("non-positive diagonal Hessian in the Schur complement")
            if self.backend == "scipy":
                drho, dphi, n_solves = self._solve_scipy(state, H, r_phi, r_rho, tau)
            else:
                drho, dphi, n_solves, its = self._solve_torch(state, H, r_phi, r_rho, tau)
                krylov += its
            solves += n_solves
            alpha = 1.0
            for _ in range(self.max_halvings):
                rho_try = rho_k + alpha * drho
                if self._admissible(rho_try):
                    phi_try = phi_k + alpha * dphi
                    rp, rr, st = self.residuals(rho_try, phi_try, rho_old, tau)
                    merit_try = self._merit(rp, rr, phi_try, tau, rho_scale)
                    if math.isfinite(merit_try) and merit_try < (1.0 - 1e-4 * alpha) * merit:
                        break
                alpha *= 0.5
                halvings += 1
            else:
                raise NewtonFailure(
                    f"step halving failed after {self.max_halvings} halvings (merit {merit:.3g})"
                )
            rho_k, phi_k, r_phi, r_rho, state, merit = rho_try, phi_try, rp, rr, st, merit_try
        if merit <= self.tol:
            self.last_phi = phi_k.reshape(shape)
            return rho_k.reshape(shape), StepStats(self.max_newton, solves, tau, krylov, halvings, merit)
        raise NewtonFailure(f"Newton did not converge in {self.max_newton} iterations (merit {merit:.3g})")
