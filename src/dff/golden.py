"""The deterministic weights of tests/golden/README.md, derived from key name and shape alone.

Used by the golden-equivalence tests and by benchmarks that need realistic-magnitude weights.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch


def deterministic_tensor(seed: int, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The value of state-dict entry `key` for `seed` under the golden recipe."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    g = np.random.Generator(np.random.PCG64(int.from_bytes(h[:8], "little")))
    z = g.standard_normal(size=shape)
    if key.endswith("num_batches_tracked"):
        v = np.zeros(shape)
    elif any(s in key for s in ("rpn_cls", "rpn_reg", "fc_cls")) and key.endswith(".weight"):
        v = 0.01 * z
    elif "fc_reg" in key and key.endswith(".weight"):
        v = 0.001 * z
    elif key.endswith("bn3.weight"):
        v = 0.1 + 0.01 * z
    elif len(shape) >= 2:
        v = z * math.sqrt(2 / math.prod(shape[1:]))
    elif key.endswith("running_mean"):
        v = 0.1 * z
    elif key.endswith("running_var"):
        v = 1 + 0.1 * np.abs(z)
    elif key.endswith(".weight"):
        v = 1 + 0.1 * z
    else:
        v = 0.01 * z
    return torch.from_numpy(np.asarray(v, dtype=np.float64)).to(dtype)


def deterministic_state_dict(template: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the keys, shapes and dtypes of `template`, filled by the golden recipe."""
    return {k: deterministic_tensor(seed, k, tuple(v.shape), v.dtype) for k, v in template.items()}
