r"""k-nearest-neighbour estimators of entropy and Rényi-type integrals from samples alone.

Used when a solver returns particles without log-densities; the same estimator is then applied
to the reference samples so that its bias cancels (``docs/problems.md``, "Energy estimators").
Neighbour search is scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import digamma, gammaln
from sklearn.neighbors import NearestNeighbors
from torch import Tensor


def log_unit_ball_volume(d: int) -> float:
    r""":math:`\log\omega_d = \tfrac d2\log\pi - \log\Gamma(\tfrac d2+1)`."""
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)


def _kth_neighbour_distance(x: Tensor, k: int) -> np.ndarray:
    points = x.detach().to("cpu", torch.float64).numpy()
    if points.shape[0] <= k:
        raise ValueError(f"k-NN estimator needs more than k={k} samples, got {points.shape[0]}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    # Column 0 is the point itself; ties at zero distance would give log 0.
    return np.maximum(dist[:, k], np.finfo(np.float64).tiny)


def kozachenko_leonenko_terms(x: Tensor, k: int = 3) -> Tensor:
    r"""Per-sample terms whose mean is the Kozachenko–Leonenko estimate of :math:`H=-\int\rho\log\rho`.

    :math:`h_i = \psi(n) - \psi(k) + \log\omega_d + d\log\varepsilon_i`, :math:`\varepsilon_i` the
    distance from :math:`x_i` to its k-th neighbour (Kozachenko & Leonenko 1987; Kraskov et al.
    2004, eq. (20)). ``x``: (n, d). Returns (n,) float64 on ``x``'s device.
    """
    n, d = x.shape
    eps = _kth_neighbour_distance(x, k)
    h = digamma(n) - digamma(k) + log_unit_ball_volume(d) + d * np.log(eps)
    return torch.as_tensor(h, dtype=torch.float64, device=x.device)


def leonenko_pronzato_savani_terms(x: Tensor, q: float, k: int | None = None) -> Tensor:
    r"""Per-sample terms whose mean estimates :math:`I_q=\int\rho^q`, :math:`q>1`.

    :math:`\zeta_i = (n-1)\,C_k\,\omega_d\,\varepsilon_i^d`,
    :math:`C_k = [\Gamma(k)/\Gamma(k+1-q)]^{1/(1-q)}`, terms :math:`\zeta_i^{1-q}` (Leonenko, Pronzato
    & Savani, Ann. Statist. 36 (2008), eq. (3.2)); unbiased asymptotically for :math:`k > q-1`.
    """
    n, d = x.shape
    if k is None:
        k = max(3, math.floor(q) + 1)
    if not k + 1 - q > 0:
        raise ValueError(f"LPS estimator needs k > q - 1, got k={k}, q={q}")
    eps = _kth_neighbour_distance(x, k)
    log_ck = (gammaln(k) - gammaln(k + 1 - q)) / (1 - q)
    log_zeta = math.log(n - 1) + log_ck + log_unit_ball_volume(d) + d * np.log(eps)
    return torch.as_tensor(np.exp((1 - q) * log_zeta), dtype=torch.float64, device=x.device)
