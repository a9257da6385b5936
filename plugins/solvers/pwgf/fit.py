r"""Fitting :math:`\theta_0` so that :math:`T_{\theta_0}\#\lambda\approx\rho_0` (PWGF's initial value).

Maximum likelihood: Adam on :math:`-\frac1n\sum_j\log\rho_\theta(x_j)` with fresh samples
:math:`x_j\sim\rho_0` every iteration (no sample is reused, so the fit cannot overfit a batch),
:math:`\log\rho_\theta(x) = \log\lambda(T_\theta^{-1}x) - \log\det\nabla T_\theta(T_\theta^{-1}x)`
by integrating the neural ODE backwards. Samples suffice: maximum likelihood works for initial laws
with compact support (Barenblatt profiles), where the reverse KL
:math:`\mathbb E_{\rho_\theta}[\log\rho_\theta - \log\rho_0]` is infinite. The map starts at the
affine push-forward of :math:`\rho_0`'s mean and covariance (:meth:`PushForward.affine_init`),
already exact for a Gaussian :math:`\rho_0`. The fit's quality,
:math:`\mathrm{KL}(\rho_0\|\rho_{\theta_0}) = \mathbb E_{\rho_0}[\log\rho_0 - \log\rho_\theta]`, is
estimated on held-out samples with its standard error when :math:`\rho_0` has a density.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from wgfbench.context import Context
from wgfbench.errors import NonFiniteOutput
from wgfbench.problem import ProblemLike

from .pushforward import PushForward

_MOMENT_SAMPLES = 20_000
_KL_SAMPLES = 4_000


@dataclass
class FitResult:
    """The fitted map and θ0, with the fit's wall time, final loss and KL estimate (NaN without
    a density of ρ0)."""

    flow: PushForward
    theta: Tensor
    seconds: float
    loss: float
    kl: float
    kl_stderr: float


def fit_initial(
    problem: ProblemLike,
    width: int,
    flow_steps: int,
    iterations: int,
    batch: int,
    lr: float,
    init_scale: float,
    ctx: Context,
) -> FitResult:
    """θ0 for ``problem.initial`` (module docstring); draws from ``ctx.cpu_generator`` and
    ``ctx.generator`` only, checks the budget every iteration."""
    started = time.perf_counter()
    initial = problem.initial
    x0 = ctx.to(initial.sample(_MOMENT_SAMPLES, ctx.cpu_generator))
    mean = x0.mean(0)
    centred = x0 - mean
    cov = centred.T @ centred / (x0.shape[0] - 1)
    scale = centred.std(0).clamp_min(1e-6)
    flow = PushForward(problem.dim, width, flow_steps, shift=mean, scale=scale)
    theta = flow.affine_init(mean, cov, ctx.generator, init_scale).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, iterations))
    loss_value = math.nan
    for _ in range(iterations):
        ctx.check_budget()
        x = ctx.to(initial.sample(batch, ctx.cpu_generator))
        loss = -flow.log_density(theta, x).mean()
        if not torch.isfinite(loss):
            raise NonFiniteOutput("pwgf: non-finite likelihood while fitting theta_0")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        loss_value = float(loss.detach())
    theta = theta.detach()
    kl, kl_se = math.nan, math.nan
    if initial.has_density:
        with torch.no_grad():
            x = initial.sample(_KL_SAMPLES, ctx.cpu_generator)
            gap = initial.log_density(x).to(ctx.dtype).to(ctx.device) - flow.log_density(theta, ctx.to(x))
            kl = float(gap.mean())
            kl_se = float(gap.std() / math.sqrt(gap.shape[0]))
    return FitResult(flow, theta, time.perf_counter() - started, loss_value, kl, kl_se)
