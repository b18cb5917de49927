"""The key-frame stage alone (`key_features`: backbone, neck and FlowNet's key-image encoding) of one source tree's
fast network, R-50-DC5 at the real frames' 1008×576 input, random weights and image (the cost does not depend on
them). Run it from two trees in turn to compare them without the rest of `dff benchmark`:

    for r in 1 2 3; do
        PYTHONPATH=../old/src python benchmarks/ab_key_stage.py old
        PYTHONPATH=src python benchmarks/ab_key_stage.py new
    done

Prints the median of 10 timed calls after 3 warm-up calls, 2 threads. Works with the stage signatures before and
after batched stages (`img_shape` / `img_shapes`).
"""

import inspect
import statistics
import sys
import time

import torch

from dff.config import PRESETS
from dff.models.detector import DFF
from dff.models.fast import fast_network

torch.set_num_threads(2)
torch.manual_seed(0)
fast = fast_network(DFF(PRESETS["r50_dc5"]()).eval())
img = torch.randn(1, 3, 576, 1008).contiguous(memory_format=torch.channels_last)
batched = "img_shapes" in inspect.signature(fast.key_features).parameters
args = (img, [(576, 1008)]) if batched else (img, (576, 1008))
times = []
with torch.inference_mode():
    for _ in range(13):
        start = time.perf_counter()
        fast.key_features(*args)
        times.append(time.perf_counter() - start)
timed = [round(1000 * t) for t in times[3:]]
print(f"{sys.argv[1]}: key_features median {1000 * statistics.median(times[3:]):.1f} ms, calls {timed}")
