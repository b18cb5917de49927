"""mmcv's `LrUpdaterHook(policy='step', warmup='linear', by_epoch=True)` as a pure function (docs/mmtracking_spec.md
§1.7).

The step factor changes per epoch (0-based epoch e: gamma ** #{s in steps : e >= s}); the linear warm-up
runs per iteration over the first `warmup_iters` global iterations, starting at `warmup_ratio * lr`.
Being a pure function of (epoch, global iteration), the schedule needs no state of its own to resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepWarmupSchedule:
    """Step LR by epoch with a linear warm-up by iteration."""

    base_lr: float
    steps: tuple[int, ...] = (2, 5)
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3.0

    def regular_lr(self, epoch: int) -> float:
        """The step schedule's LR for a 0-based epoch."""
        return self.base_lr * self.gamma ** sum(epoch >= s for s in self.steps)

    def lr(self, epoch: int, global_iter: int) -> float:
        """The LR of the iteration `global_iter` (0-based, counted over all epochs) in `epoch`."""
        regular = self.regular_lr(epoch)
        if global_iter >= self.warmup_iters:
            return regular
        k = (1 - global_iter / self.warmup_iters) * (1 - self.warmup_ratio)
        return regular * (1 - k)

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, global_iter: int) -> float:
        """Set every parameter group's LR for this iteration (times the group's `lr_mult`, if any); returns it."""
        lr = self.lr(epoch, global_iter)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr
