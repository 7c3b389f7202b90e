"""Hypergradient of a chain of nested problems: DARTS' virtual step, with finite differences.

A chain of lower levels 0..K-1 sits under an outer (top) problem with parameters phi. Level 0
minimises ``loss_0(theta_0, phi)``; level k > 0 minimises ``loss_k(theta_k, theta_{k-1})``; the
outer loss may depend on every theta_k (and on phi directly). Each level's solution is
approximated by one virtual step from its current value, taken in order from level 0 up:

    theta_k' = theta_k - xi_k * d loss_k / d theta_k   (at theta_{k-1}', or at phi for level 0)

so theta_k' is a function of phi through theta_0', ..., theta_{k-1}'. The hypergradient is the
exact derivative of ``outer(theta_0', ..., theta_{K-1}', phi)`` with respect to phi, by the chain
rule from the top level down. With v_{K-1} = d outer / d theta_{K-1}',

    v_{k-1} = d outer / d theta_{k-1}' - xi_k (d^2 loss_k / d theta_{k-1} d theta_k) v_k
    grad_phi = d outer / d phi - xi_0 (d^2 loss_0 / d phi d theta_0) v_0

and each mixed second derivative times a vector is a central finite difference along it,
[d_x loss(theta + eps v) - d_x loss(theta - eps v)] / (2 eps), eps = epsilon / ||v||
(Liu et al. 2019, DARTS, eq. 7-8). With one level this is DARTS' second-order approximation.
With two (MLO-MAE: pretraining, fine-tuning, masking) v_0 sums both of the masking network's
paths, masking -> pretraining -> masking (d outer / d theta_0') and masking -> fine-tuning ->
pretraining -> masking (through theta_1'); by linearity one finite difference of loss_0 serves
both.

Betty's ``darts`` hypergradient (which the official MLO-MAE uses; Betty does not install on
Python 3.11) differs in two ways: it takes no virtual step (the outer gradient is taken at the
lower levels' current parameters, reached by their real optimiser steps), and it drops xi, i.e.
it reads DARTS as implicit differentiation with the inverse Hessian replaced by the identity:
best-response Jacobian times v ~ -(d^2 loss / d x d theta) v. It also runs one finite difference
per path (two for MLO-MAE's masking network) where this chain runs one. Betty's hypergradient is
therefore ours at theta' = theta and xi = 1; with Adam on phi (as in MLO-MAE) a constant factor
on the hypergradient hardly changes the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Loss = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Level:
    """A lower problem: ``loss`` recomputes its loss from the current parameter values; ``params``
    (its own, theta_k) take the virtual step of size ``lr`` (xi_k)."""

    loss: Loss
    params: Sequence[torch.Tensor]
    lr: float


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@torch.no_grad()
def _add_(params: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor], scale: float) -> None:
    for p, d in zip(params, deltas):
        p.add_(d, alpha=scale)


@torch.no_grad()
def _copy_(params: Sequence[torch.Tensor], saved: Sequence[torch.Tensor]) -> None:
    for p, s in zip(params, saved):
        p.copy_(s)


def _mixed_product(level: Level, v: Sequence[torch.Tensor], wrt: Sequence[torch.Tensor],
                   epsilon: float) -> list[torch.Tensor]:
    """(d^2 level.loss / d wrt d level.params) v by central differences; level.params restored."""
    # No wait for the device: eps stays a tensor. A zero v perturbs nothing, so plus == minus and
    # the product is 0 (the clamp only avoids 0 / 0).
    eps = epsilon / torch.sqrt(sum((g * g).sum() for g in v)).clamp_min(1e-12)
    delta = [g * eps for g in v]
    _add_(level.params, delta, 1.0)
    plus = _grads(level.loss(), wrt)
    _add_(level.params, delta, -2.0)
    minus = _grads(level.loss(), wrt)
    _add_(level.params, delta, 1.0)
    return [(gp - gm) / (2 * eps) for gp, gm in zip(plus, minus)]


def darts_hypergradient(levels: Sequence[Level], outer_loss: Loss, outer_params: Sequence[torch.Tensor],
                        epsilon: float = 0.01) -> list[torch.Tensor]:
    """d outer(theta_0', ..., theta_{K-1}', phi) / d phi for the chain ``levels`` (lowest first);
    one tensor per outer parameter (phi). See the module docstring.

    Every level's parameters are moved in place and restored before returning.
    """
    backups = [[p.detach().clone() for p in level.params] for level in levels]
    for level in levels:  # virtual steps, level 0 first: each at the lower levels' stepped values
        _add_(level.params, _grads(level.loss(), level.params), -level.lr)
    all_params = [p for level in levels for p in level.params]
    grads = _grads(outer_loss(), [*all_params, *outer_params])
    vectors, start = [], 0
    for level in levels:
        vectors.append(grads[start:start + len(level.params)])
        start += len(level.params)
    direct = grads[start:]
    # top down: level k's own parameters back at their value before its step, the lower ones stepped
    for k in reversed(range(len(levels))):
        _copy_(levels[k].params, backups[k])
        wrt = levels[k - 1].params if k else outer_params
        product = _mixed_product(levels[k], vectors[k], wrt, epsilon)
        target = vectors[k - 1] if k else direct
        for i, (t, p) in enumerate(zip(target, product)):
            target[i] = t - levels[k].lr * p
    for level, saved in zip(levels, backups):  # exactly as before (finite differences add rounding)
        _copy_(level.params, saved)
    return direct
