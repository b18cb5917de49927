"""dff.distributed: one process without torchrun; the device each rank gets under it."""

from __future__ import annotations

import torch
import torch.distributed as dist

from dff.distributed import _device, current, distributed, launch_world_size


def test_single_process_has_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed("cpu") as d:
        assert (d.rank, d.world_size, d.local_rank, d.device, d.is_main) == (0, 1, 0, torch.device("cpu"), True)
        d.barrier()  # nothing to wait for
        assert not dist.is_initialized() and current() == (0, 1) and launch_world_size() == 1


def test_each_rank_gets_its_local_gpu_under_torchrun():
    assert _device("cuda:3", world=1, local_rank=0) == torch.device("cuda", 3)  # one process: as given
    assert _device("cuda", world=1, local_rank=0) == torch.device("cuda", 0)
    assert _device("cuda", world=4, local_rank=2) == torch.device("cuda", 2)
    assert _device("cuda:0", world=4, local_rank=2) == torch.device("cuda", 2)  # several: always LOCAL_RANK's
    assert _device("cpu", world=4, local_rank=2) == torch.device("cpu")
    expected = torch.device("cuda", 1) if torch.cuda.is_available() else torch.device("cpu")
    assert _device(None, world=2, local_rank=1) == expected
