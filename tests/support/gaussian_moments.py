"""Independent checks shared by the tests of Gaussian flows: moment ODEs solved numerically.

For a quadratic potential and Gaussian data the Fokker–Planck and Kalman–Wasserstein flows stay
Gaussian, and their moments solve ODEs (docs/problems.md):

* Fokker–Planck, :math:`V = \\tfrac12(x-\\mu)^\\top A(x-\\mu)`:
  :math:`\\dot m = -A(m-\\mu)`, :math:`\\dot\\Sigma = -A\\Sigma - \\Sigma A + 2I`;
* Kalman–Wasserstein, :math:`\\Phi = \\tfrac12(u-m_*)^\\top B(u-m_*) + c`:
  :math:`\\dot m = -CB(m-m_*)`, :math:`\\dot C = 2C - 2CBC`.

Solving them with scipy's DOP853 at tight tolerances checks closed forms independently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.integrate
import torch

F64 = torch.float64
MomentRHS = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def quadratic_of(problem) -> tuple[np.ndarray, np.ndarray]:
    """``(H, centre)`` of a quadratic potential :math:`\\tfrac12(x-c)^\\top H(x-c) + \\text{const}`,
    recovered from ``problem.energy.grad_V`` alone (exact for a linear gradient)."""
    d = problem.dim
    grad0 = problem.energy.grad_V(torch.zeros(1, d, dtype=F64))[0]
    H = (problem.energy.grad_V(torch.eye(d, dtype=F64)) - grad0).numpy().T
    return 0.5 * (H + H.T), -np.linalg.solve(H, grad0.numpy())


def fokker_planck_rhs(A: np.ndarray, mu: np.ndarray) -> MomentRHS:
    """:math:`(\\dot m, \\dot\\Sigma) = (-A(m-\\mu), -A\\Sigma - \\Sigma A + 2I)`."""
    eye = np.eye(len(mu))
    return lambda m, S: (-A @ (m - mu), -A @ S - S @ A + 2 * eye)


def kalman_wasserstein_rhs(B: np.ndarray, m_star: np.ndarray) -> MomentRHS:
    """:math:`(\\dot m, \\dot C) = (-CB(m-m_*), 2C - 2CBC)`."""
    return lambda m, C: (-C @ B @ (m - m_star), 2 * C - 2 * C @ B @ C)


def moment_ode(rhs: MomentRHS, m0, S0, times: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Means (T, d) and covariances (T, d, d) at ``times`` from ``(m0, S0)`` by DOP853
    (rtol 1e-12, atol 1e-13)."""
    m0, S0 = np.asarray(m0, dtype=float), np.asarray(S0, dtype=float)
    d = len(m0)

    def flat_rhs(_t, y):
        dm, dS = rhs(y[:d], y[d:].reshape(d, d))
        return np.concatenate([dm, dS.ravel()])

    sol = scipy.integrate.solve_ivp(
        flat_rhs,
        (0.0, max(times)),
        np.concatenate([m0, S0.ravel()]),
        method="DOP853",
        t_eval=list(times),
        rtol=1e-12,
        atol=1e-13,
    )
    assert sol.success, sol.message
    return sol.y[:d].T, sol.y[d:].T.reshape(len(times), d, d)


def rel(a, b) -> float:
    """Relative error :math:`\\|a-b\\|/\\|b\\|` (Frobenius)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
