"""Chainer optimisers that take the same steps as ``torch.optim.SGD`` / ``torch.optim.Adam``.

A framework comparison from identical weights is only meaningful if both frameworks apply
the same update rule, so every difference between the two libraries is handled here:

1. **Momentum.** torch keeps ``buf = m * buf + g`` and steps ``p -= lr * buf``; Chainer's
   MomentumSGD keeps ``v = m * v - lr * g`` and steps ``p += v``. By induction
   ``v == -lr * buf`` as long as lr is constant, so the two agree step for step. When the
   schedule changes lr from a to b, torch's next step is ``-b * (m * buf + g)`` but Chainer's
   is ``m * v - b * g = -a * m * buf - b * g``: the history would be weighted by the *old* lr.
   :func:`rescale_momentum` multiplies every velocity by b / a, restoring ``v == -b * buf``
   exactly. (Caveat: while lr is 0, ``v`` decays towards 0 but torch's ``buf`` keeps
   accumulating gradients, so the steps after a stretch at lr = 0 differ; a schedule that
   starts warm-up at exactly 0 should start at a small positive lr instead.)
2. **Adam's eps.** torch divides by ``sqrt(v_t / (1 - b2^t)) + eps``; Chainer folds the bias
   correction into the step size and divides by ``sqrt(v_t) + eps``, i.e. its eps is
   effectively ``eps / sqrt(1 - b2^t)`` in torch's terms (up to 31x larger at t = 1). Chainer
   reads eps afresh at every update, so :class:`TorchAdam` sets each parameter's eps to
   ``eps * sqrt(1 - b2^t)`` before its t-th step, which makes the two formulas identical.
3. **Parameters without a gradient.** torch skips them (no momentum decay, no weight decay,
   no Adam step count); Chainer would allocate zero gradients and update them anyway
   (``reallocate_cleared_grads``), which matters for head-only training. Both optimisers here
   skip them.
4. **Weight decay** is coupled L2 added to the gradient before the momentum/moment updates in
   both: torch's ``weight_decay=`` and Chainer's ``WeightDecay`` optimizer hook (added by
   :func:`make_optimizer`).
"""
from __future__ import annotations

import math

from ._compat import chainer
from chainer.optimizer_hooks import WeightDecay
from chainer.optimizers.adam import AdamRule
from chainer.optimizers.momentum_sgd import MomentumSGDRule

from harness.backend import OptimSpec
from harness.errors import BenchError

OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults (Kingma & Ba 2015)
ADAM_EPS = 1e-8


class _SkipWithoutGrad:
    """Update-rule mixin: a parameter with no gradient is left alone, as torch does."""

    def update(self, param):
        if param.grad is None:
            return
        super().update(param)  # type: ignore[misc]  # a mixin: the Chainer UpdateRule after it in the MRO has it


class _TorchSGDRule(_SkipWithoutGrad, MomentumSGDRule):
    pass


class _TorchAdamRule(_SkipWithoutGrad, AdamRule):
    def update_core(self, param):
        hp = self.hyperparam
        # self.t is this parameter's step count, already incremented for this step.
        hp.eps = hp.torch_eps * math.sqrt(1.0 - hp.beta2 ** self.t)
        super().update_core(param)


class TorchSGD(chainer.optimizers.MomentumSGD):
    """MomentumSGD that skips gradient-less parameters; see :func:`rescale_momentum`."""

    def create_update_rule(self):
        return _TorchSGDRule(self.hyperparam)

    def reallocate_cleared_grads(self):
        pass  # leave missing gradients missing: those parameters are skipped


class TorchAdam(chainer.optimizers.Adam):
    """Adam with torch's eps placement (see the module docstring, point 2)."""

    def __init__(self, alpha: float, beta1: float = ADAM_BETAS[0], beta2: float = ADAM_BETAS[1],
                 eps: float = ADAM_EPS):
        super().__init__(alpha=alpha, beta1=beta1, beta2=beta2, eps=eps)
        self.hyperparam.torch_eps = eps

    def create_update_rule(self):
        return _TorchAdamRule(self.hyperparam)

    def reallocate_cleared_grads(self):
        pass


def make_optimizer(spec: OptimSpec, target: chainer.Link) -> chainer.Optimizer:
    """The optimiser ``spec`` names, set up on ``target``, with coupled weight decay."""
    if spec.name == "sgd":
        optimizer: chainer.Optimizer = TorchSGD(lr=spec.lr, momentum=spec.momentum)
    elif spec.name == "adam":
        optimizer = TorchAdam(alpha=spec.lr)
    else:
        raise BenchError(f"unknown optimiser {spec.name!r}: choose one of {', '.join(OPTIMIZERS)}")
    optimizer.setup(target)
    if spec.weight_decay:
        optimizer.add_hook(WeightDecay(spec.weight_decay))
    return optimizer


def _actual(optimizer: chainer.Optimizer) -> chainer.Optimizer:
    """The optimiser itself, also when ChainerMN's multi-node optimizer wraps it (distributed
    runs): the wrapper forwards attribute access but not ``isinstance``."""
    return getattr(optimizer, "actual_optimizer", optimizer)


def get_lr(optimizer: chainer.Optimizer) -> float:
    optimizer = _actual(optimizer)
    return optimizer.alpha if isinstance(optimizer, chainer.optimizers.Adam) else optimizer.lr


def set_lr(optimizer: chainer.Optimizer, lr: float, *, rescale: bool = True) -> None:
    """Set the learning rate; for SGD also rescale the velocities (module docstring, point 1)
    unless ``rescale=False`` (velocities just loaded from a checkpoint taken at ``lr``)."""
    optimizer = _actual(optimizer)
    if isinstance(optimizer, chainer.optimizers.Adam):
        optimizer.alpha = lr  # Adam's moments do not contain lr: nothing to rescale
        return
    old = optimizer.lr
    if rescale and old != lr and old != 0:
        rescale_momentum(optimizer, lr / old)
    optimizer.lr = lr


def rescale_momentum(optimizer: chainer.Optimizer, factor: float) -> None:
    """Multiply every MomentumSGD velocity by ``factor`` in place (on its device)."""
    for param in optimizer.target.params():
        rule = param.update_rule
        state = rule.state if rule is not None else None
        if state and state.get("v") is not None:
            state["v"] *= factor
