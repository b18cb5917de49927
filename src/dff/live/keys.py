"""Key frames computed beside the frame loop (`--key-mode async`): the `DeferredKeys` of a `dff.api.VideoSession`.

`BackgroundKeys` runs a key frame's backbone pass in a worker thread while the loop goes on propagating later frames
from the previous key state; the new key state takes over at the first frame after it lands. One pass at a time: a
key frame asked for while one is still running is dropped (the policy asks again at its next occasion).

On CPU the worker and the loop share the cores deliberately: each side runs its torch operators on its own number of
OpenMP threads (set per thread; by default one each on a 2-core machine, `threads` to change the worker's), instead of
two full-width thread teams fighting over the same cores. On CUDA the worker issues its pass on a second stream and
the loop waits for it (an event) only when the key state is handed over.

`SimulatedKeys` is the same schedule on a simulated clock (`dff.live.clock`): the pass is computed at once, but it
lands only when the clock has run for the pass's time from the runtime profile, so that a replay is reproducible.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from dff.live.clock import SimulatedClock
from dff.models.detector import KeyState
from dff.models.network import Network


class BackgroundKeys:
    """Key frames on a worker thread (CPU: `threads` OpenMP threads of its own; CUDA: a second stream)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dff key frame")
        self._pending: Future | None = None
        self._tag: Any = None
        self.passes = 0
        self.seconds: list[float] = []  # wall time of each pass (the runtime profile's async backbone time)

    @property
    def busy(self) -> bool:
        """A pass is running (or finished and not yet handed over)."""
        return self._pending is not None

    def request(self, net: Network, img: torch.Tensor, img_shape: tuple[int, int], tag: Any) -> bool:
        if self._pending is not None:
            return False
        self._tag = tag
        self._pending = self._pool.submit(self._pass, net, img, img_shape)
        self.passes += 1
        return True

    def landed(self) -> tuple[KeyState, Any] | None:
        pending = self._pending
        if pending is None or not pending.done():
            return None
        self._pending = None
        key, event = pending.result()  # the worker's error, if any, is raised here in the loop
        if event is not None:
            torch.cuda.current_stream().wait_event(event)
        return key, self._tag

    def wait(self) -> None:
        """Block until the running pass (if any) has finished (tests; shutting down)."""
        if self._pending is not None:
            self._pending.exception()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _pass(self, net: Network, img: torch.Tensor, img_shape: tuple[int, int]) -> tuple[KeyState, Any]:
        start = time.perf_counter()
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # this thread's own OpenMP team (the loop keeps its own)
        with torch.inference_mode():
            if img.device.type == "cuda":
                stream = torch.cuda.Stream(img.device)
                stream.wait_stream(torch.cuda.current_stream(img.device))
                with torch.cuda.stream(stream):
                    key = net.key_features(img, [img_shape])
                    event = torch.cuda.Event()
                    event.record(stream)
            else:
                key, event = net.key_features(img, [img_shape]), None
        self.seconds.append(time.perf_counter() - start)
        return key, event


class SimulatedKeys:
    """The background schedule on a simulated clock: a pass requested at time t lands at t + `seconds`."""

    def __init__(self, clock: SimulatedClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self._pending: tuple[float, KeyState, Any] | None = None
        self.passes = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def request(self, net: Network, img: torch.Tensor, img_shape: tuple[int, int], tag: Any) -> bool:
        if self._pending is not None:
            return False
        with torch.inference_mode():
            key = net.key_features(img, [img_shape])
        self._pending = (self.clock.now() + self.seconds, key, tag)
        self.passes += 1
        return True

    def landed(self) -> tuple[KeyState, Any] | None:
        if self._pending is None or self._pending[0] > self.clock.now():
            return None
        _, key, tag = self._pending
        self._pending = None
        return key, tag

    def close(self) -> None:
        """Nothing runs in the background."""
