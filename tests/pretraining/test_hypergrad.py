"""DARTS finite-difference hypergradient against the exact unrolled gradient (autograd), for one
lower level and for MLO-MAE's chain of two (both of the masking network's paths)."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from dermascreen.pretraining.hypergrad import Level, darts_hypergradient


def _problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    phi = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64)
    target = torch.randn(5, generator=g, dtype=torch.float64)

    def inner(t, p):  # lower level: a phi-weighted, nonlinear regression in theta
        return (torch.sigmoid(a @ p) * (t - target) ** 2).sum() + 0.1 * torch.tanh(t).pow(2).sum()

    def outer(t, p):  # upper level: depends on phi only through theta (as in MLO-MAE)
        return torch.log1p((t.sin() * torch.arange(1, 6, dtype=t.dtype)).pow(2).sum())

    return theta, phi, inner, outer


def _exact(theta, phi, inner, outer, lr):
    step = torch.autograd.grad(inner(theta, phi), theta, create_graph=True)[0]
    return torch.autograd.grad(outer(theta - lr * step, phi), phi)[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_exact_unrolled_hypergradient(seed):
    theta, phi, inner, outer = _problem(seed)
    exact = _exact(theta, phi, inner, outer, lr=0.1)
    before = theta.detach().clone()
    (approx,) = darts_hypergradient([Level(lambda: inner(theta, phi), [theta], 0.1)], lambda: outer(theta, phi),
                                    [phi], epsilon=1e-4)
    torch.testing.assert_close(approx, exact, rtol=1e-5, atol=1e-8)
    assert torch.equal(theta.detach(), before)  # parameters restored
    assert exact.abs().max() > 1e-3  # the problem really couples the levels


def test_direct_dependence_of_the_outer_loss_is_added():
    theta, phi, inner, _ = _problem(3)

    def outer(t, p):
        return (t ** 2).sum() + (p ** 3).sum()

    exact = _exact(theta, phi, inner, outer, lr=0.05)
    (approx,) = darts_hypergradient([Level(lambda: inner(theta, phi), [theta], 0.05)], lambda: outer(theta, phi),
                                    [phi], epsilon=1e-4)
    torch.testing.assert_close(approx, exact, rtol=1e-5, atol=1e-8)


def test_modules_in_float32_with_the_default_epsilon():
    torch.manual_seed(0)
    net, weigher = nn.Linear(4, 2), nn.Linear(4, 1)  # theta (lower level), phi (upper level)
    x, y, x_val, y_val = torch.randn(16, 4), torch.randn(16, 2), torch.randn(8, 4), torch.randn(8, 2)

    def inner(params=None):
        out = net(x) if params is None else functional_call(net, params, (x,))
        return (torch.sigmoid(weigher(x)).squeeze(-1) * ((out - y) ** 2).sum(1)).mean()

    def outer(params=None):
        out = net(x_val) if params is None else functional_call(net, params, (x_val,))
        return ((out - y_val) ** 2).mean()

    params = dict(net.named_parameters())
    grads = torch.autograd.grad(inner(params), list(params.values()), create_graph=True)
    unrolled = {name: p - 0.5 * g for (name, p), g in zip(params.items(), grads)}
    exact = torch.autograd.grad(outer(unrolled), list(weigher.parameters()))
    approx = darts_hypergradient([Level(inner, list(net.parameters()), 0.5)], outer, list(weigher.parameters()))
    for a, e in zip(approx, exact):
        torch.testing.assert_close(a, e, rtol=1e-2, atol=1e-5)
    assert sum(e.abs().sum() for e in exact) > 1e-3


def _three_levels(seed: int):
    """MLO-MAE's shape: phi weights theta's problem; psi's problem reads theta; the outer reads both."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    phi = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    target = torch.randn(5, generator=g, dtype=torch.float64)

    def pretrain(t, f):  # level 0 (MAE): reconstruction weighted by the masking network phi
        return (torch.sigmoid(a @ f) * (t - target) ** 2).sum() + 0.1 * torch.tanh(t).pow(2).sum()

    def finetune(s, t):  # level 1 (head psi on theta's features)
        return torch.log1p(((b @ torch.tanh(t)) * s - 1.0).pow(2).sum()) + 0.05 * (s * t[:4]).pow(2).sum()

    def masking(t, s):  # outer (masking network's loss): the head on theta's features, held-out data
        return ((b @ torch.sin(t)) * s + 0.5).pow(2).mean()

    return theta, psi, phi, pretrain, finetune, masking


def _exact_chain(theta, psi, phi, pretrain, finetune, masking, lr0, lr1, both_paths=True):
    theta1 = theta - lr0 * torch.autograd.grad(pretrain(theta, phi), theta, create_graph=True)[0]
    # one path only: the head's step does not see theta's dependence on phi
    seen = theta1 if both_paths else theta1.detach()
    psi1 = psi - lr1 * torch.autograd.grad(finetune(psi, seen), psi, create_graph=True)[0]
    return torch.autograd.grad(masking(theta1, psi1), phi)[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_paths_of_a_three_level_chain_match_exact_autograd(seed):
    theta, psi, phi, pretrain, finetune, masking = _three_levels(seed)
    exact = _exact_chain(theta, psi, phi, pretrain, finetune, masking, 0.1, 0.2)
    before = [theta.detach().clone(), psi.detach().clone()]
    levels = [Level(lambda: pretrain(theta, phi), [theta], 0.1), Level(lambda: finetune(psi, theta), [psi], 0.2)]
    (approx,) = darts_hypergradient(levels, lambda: masking(theta, psi), [phi], epsilon=1e-4)
    torch.testing.assert_close(approx, exact, rtol=1e-5, atol=1e-8)
    assert torch.equal(theta.detach(), before[0]) and torch.equal(psi.detach(), before[1])  # restored
    # the second path (masking -> fine-tuning -> pretraining -> masking) matters: without it the
    # hypergradient is another vector
    one_path = _exact_chain(theta, psi, phi, pretrain, finetune, masking, 0.1, 0.2, both_paths=False)
    assert (exact - one_path).abs().max() > 1e-2 * exact.abs().max()


def test_three_level_modules_in_float32_with_the_default_epsilon():
    torch.manual_seed(0)
    # theta: a feature net trained on phi-weighted reconstruction; psi: a head on its features
    net, head, weigher = nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(4, 1)
    x, x_train, y_train = torch.randn(16, 4), torch.randn(12, 4), torch.randint(0, 2, (12,))
    x_held, y_held = torch.randn(8, 4), torch.randint(0, 2, (8,))
    target = torch.randn(16, 3)

    def call(module, params, inputs):
        return module(inputs) if params is None else functional_call(module, params, (inputs,))

    def pretrain(t=None):
        return (torch.sigmoid(weigher(x)).squeeze(-1) * ((torch.tanh(call(net, t, x)) - target) ** 2).sum(1)).mean()

    def classify(inputs, labels, t=None, s=None):
        return nn.functional.cross_entropy(call(head, s, torch.tanh(call(net, t, inputs))), labels)

    thetas, psis = dict(net.named_parameters()), dict(head.named_parameters())
    steps = torch.autograd.grad(pretrain(thetas), list(thetas.values()), create_graph=True)
    theta1 = {name: p - 0.5 * g for (name, p), g in zip(thetas.items(), steps)}
    steps = torch.autograd.grad(classify(x_train, y_train, theta1, psis), list(psis.values()), create_graph=True)
    psi1 = {name: p - 0.3 * g for (name, p), g in zip(psis.items(), steps)}
    exact = torch.autograd.grad(classify(x_held, y_held, theta1, psi1), list(weigher.parameters()))
    levels = [Level(pretrain, list(net.parameters()), 0.5),
              Level(lambda: classify(x_train, y_train), list(head.parameters()), 0.3)]
    approx = darts_hypergradient(levels, lambda: classify(x_held, y_held), list(weigher.parameters()))
    for a, e in zip(approx, exact):
        torch.testing.assert_close(a, e, rtol=2e-2, atol=1e-5)
    assert sum(e.abs().sum() for e in exact) > 1e-4
