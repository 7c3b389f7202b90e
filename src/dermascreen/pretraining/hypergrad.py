"""Hypergradient of a bilevel problem by DARTS' finite-difference approximation.

The lower level minimises ``inner(theta, phi)``; its solution is approximated by one unrolled
gradient step, theta' = theta - xi * d inner / d theta. The upper level's gradient is then

    d outer(theta', phi) / d phi
      = d_phi outer(theta', phi) - xi * (d^2 inner / d phi d theta) v,   v = d outer / d theta'

and the mixed second derivative times v is taken by central finite differences,
[d_phi inner(theta + eps v) - d_phi inner(theta - eps v)] / (2 eps), eps = epsilon / ||v||
(Liu et al. 2019, DARTS, eq. 7-8). This is what Betty's ``darts`` hypergradient does for
MLO-MAE; Betty itself does not install on Python 3.11.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Loss = Callable[[], torch.Tensor]


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@torch.no_grad()
def _add_(params: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor], scale: float) -> None:
    for p, d in zip(params, deltas):
        p.add_(d, alpha=scale)


def darts_hypergradient(inner_loss: Loss, outer_loss: Loss, inner_params: Sequence[torch.Tensor],
                        outer_params: Sequence[torch.Tensor], inner_lr: float,
                        epsilon: float = 0.01) -> list[torch.Tensor]:
    """Approximate d outer(theta - xi grad_theta inner) / d phi; one tensor per outer parameter.

    ``inner_loss`` and ``outer_loss`` recompute their losses from the current parameter values;
    ``inner_params`` (theta) are perturbed in place and restored before returning.
    """
    backup = [p.detach().clone() for p in inner_params]
    step = _grads(inner_loss(), inner_params)
    _add_(inner_params, step, -inner_lr)  # theta' = theta - xi * grad
    grads = _grads(outer_loss(), [*inner_params, *outer_params])
    v, direct = grads[: len(inner_params)], grads[len(inner_params):]
    with torch.no_grad():
        for p, saved in zip(inner_params, backup):
            p.copy_(saved)
    # No wait for the device: eps stays a tensor. A zero v perturbs nothing, so plus == minus and
    # the second term is 0 (the clamp only avoids 0 / 0).
    eps = epsilon / torch.sqrt(sum((g * g).sum() for g in v)).clamp_min(1e-12)
    delta = [g * eps for g in v]
    _add_(inner_params, delta, 1.0)
    plus = _grads(inner_loss(), outer_params)
    _add_(inner_params, delta, -2.0)
    minus = _grads(inner_loss(), outer_params)
    with torch.no_grad():
        for p, saved in zip(inner_params, backup):
            p.copy_(saved)
    return [d - inner_lr * (gp - gm) / (2 * eps) for d, gp, gm in zip(direct, plus, minus)]
