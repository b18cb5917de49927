"""Helper for test_train_ddp.py, run by torchrun: one DDP step of the DFF losses on two processes (gloo).

Each rank trains on its own pair. It records how far the DDP gradient is from the mean of the ranks' local
gradients (computed without DDP, same sampler RNG) and saves its weights after one SGD step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from dff.config import preset
from dff.data.train_dataset import build_train_dataset
from dff.models.detector import DFF
from dff.training.losses import LOSS_NAMES, DFFLoss


def _grads(module: torch.nn.Module, model: torch.nn.Module, pair, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    losses = model([pair])
    sum(losses[k] for k in LOSS_NAMES).backward()
    grads = [p.grad.detach().clone() for p in module.parameters() if p.requires_grad]
    module.zero_grad(set_to_none=True)
    return grads


def main(root: Path, out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    cfg = preset("tiny_synthetic")
    ds = build_train_dataset(cfg, root / "annotations" / "imagenet_vid_train.json", root / "Data" / "VID")
    pair = ds[rank]
    torch.manual_seed(0)
    module = DFFLoss(DFF(cfg).train())  # identical initial weights on every rank
    local = _grads(module, module, pair, seed=100 + rank)
    ddp = DistributedDataParallel(module)
    synced = _grads(module, ddp, pair, seed=100 + rank)
    errors, spread = [], []
    for g_local, g_ddp in zip(local, synced):
        gathered = [torch.zeros_like(g_local) for _ in range(world)]
        dist.all_gather(gathered, g_local)
        mean = torch.stack(gathered).mean(0)
        errors.append(float((g_ddp - mean).abs().max() / (mean.abs().max() + 1e-12)))
        spread.append(float((gathered[0] - gathered[1]).abs().max()))
    params = [p for p in module.parameters() if p.requires_grad]
    torch.manual_seed(100 + rank)
    losses = ddp([pair])
    sum(losses[k] for k in LOSS_NAMES).backward()
    torch.optim.SGD(params, lr=0.01, momentum=0.9).step()
    torch.save({n: p.detach() for n, p in module.net.named_parameters()}, out / f"weights_rank{rank}.pt")
    (out / f"report_rank{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world": world,
                "max_rel_error": max(errors),
                "max_rank_difference": max(spread),
                "num_params": len(errors),
            }
        )
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
