"""The live loop: the newest frame each turn (drops counted), key frames beside the loop in async mode, latency on
every result; on the simulated clock the schedule is exact and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

import dff
from dff.cli.demo import CLIP_PATH, MODEL_PATH
from dff.io.sources import Frame, open_source
from dff.live.clock import ModeTimes, RuntimeProfile, SimulatedClock
from dff.live.loop import LiveLoop, LiveOptions, Replay
from dff.run import RunOptions

FPS = 25.0
PERIOD = 1 / FPS
# a machine where a propagated frame takes 2.5 frame periods, a key frame 6, a pass beside the loop 8 (3 when busy)
PROFILE = RuntimeProfile(
    sync=ModeTimes(key_s=6 * PERIOD, propagate_s=2.5 * PERIOD),
    async_=ModeTimes(key_s=6 * PERIOD, propagate_s=2.5 * PERIOD, propagate_busy_s=3 * PERIOD, backbone_s=8 * PERIOD),
)


@pytest.fixture(scope="module")
def model() -> dff.DFFModel:
    return dff.load(MODEL_PATH)


@pytest.fixture(scope="module")
def clip() -> list[Frame]:
    with open_source(CLIP_PATH) as src:
        images = [f.image for f in src]
    return [Frame(i, i / FPS, im) for i, im in enumerate(images[:40])]


FOUR = dff.FixedInterval(4)


def simulate(model, frames, key_mode, policy=FOUR):
    clock = SimulatedClock()
    feed = Replay.of(frames, clock)
    loop = LiveLoop(model, RunOptions(device="cpu", key_policy=policy), LiveOptions(key_mode), clock, PROFILE)
    return list(loop.results(feed)), loop.summary, feed


def test_sync_takes_the_newest_frame_and_counts_the_rest(model, clip, one_thread):
    results, summary, feed = simulate(model, clip, "sync")
    taken = [r.frame_index for r in results]
    # frame 0 is a key frame (6 periods): the loop next takes frame 6; propagated frames take 2.5 periods
    assert taken[:4] == [0, 6, 8, 11]
    assert summary.processed == len(results) and summary.dropped == len(clip) - len(results) == feed.dropped
    for r in results:
        assert r.arrival_s == pytest.approx(r.frame_index * PERIOD)
        cost = 6 * PERIOD if r.is_key_frame else 2.5 * PERIOD
        # a frame taken as soon as the loop is free: ready one stage time after the loop turned to it
        assert r.ready_s - r.arrival_s >= cost - 1e-9
    keys = [r for r in results if r.is_key_frame]
    assert [r.key_reason for r in keys][:2] == ["first", "interval"] and all(r.key_index == r.frame_index for r in keys)
    # sync key frames stall the loop: their latency is the key stage time
    assert max(summary.latencies) == pytest.approx(6 * PERIOD + PERIOD, abs=PERIOD)


def test_async_propagates_while_the_key_frame_is_computed_beside_the_loop(model, clip, one_thread):
    results, summary, _ = simulate(model, clip, "async")
    assert results[0].is_key_frame and results[0].key_reason == "first"
    assert not any(r.is_key_frame for r in results[1:])  # no frame waits for a backbone pass
    keys = sorted({r.key_index for r in results})
    assert len(keys) >= 3 and summary.key_frames in (len(keys), len(keys) + 1)  # the last may not have landed
    # the key frame asked for at the 4th processed frame lands 8 periods later; the frames before keep the old key
    fourth = results[4]
    switch = next(r for r in results if r.key_index == fourth.frame_index)
    assert switch.arrival_s >= fourth.ready_s - 3 * PERIOD + 8 * PERIOD - 3 * PERIOD
    assert all(r.key_index == 0 for r in results if r.frame_index < switch.frame_index)
    # no stall: every latency after the first frame is a propagation's (and the wait for the loop, under a period;
    # the last frame of the stream may wait longer, for lack of a newer one)
    assert max(summary.latencies[1:-1]) <= 3 * PERIOD + PERIOD + 1e-9
    sync = simulate(model, clip, "sync")[1]
    assert summary.latency(95) < sync.latency(95)


@pytest.mark.parametrize("key_mode", ["sync", "async"])
@pytest.mark.parametrize("policy", [dff.FixedInterval(3), dff.Adaptive(budget=3)], ids=["fixed", "adaptive"])
def test_every_policy_works_in_both_modes(model, clip, key_mode, policy, one_thread):
    results, summary, _ = simulate(model, clip, key_mode, policy)
    assert summary.processed == len(results) > 5 and summary.key_frames >= 2
    assert all(r.key_index is not None and r.key_index <= r.frame_index for r in results)
    assert [r.frame_index for r in results] == sorted({r.frame_index for r in results})


def test_the_simulated_clock_is_reproducible(model, clip, one_thread):
    a, _, _ = simulate(model, clip, "async")
    b, _, _ = simulate(model, clip, "async")
    assert [(r.frame_index, r.ready_s, r.key_index) for r in a] == [(r.frame_index, r.ready_s, r.key_index) for r in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)


def test_real_clock_async_with_a_background_worker(model, clip, one_thread):
    """On the real clock the pass runs on a worker thread; a paced source of the clip at its rate."""
    from dff.io.live import LiveFrame

    def paced(frames):
        import time

        start = time.monotonic()
        for f in frames:
            due = start + f.time_s
            time.sleep(max(0.0, due - time.monotonic()))
            yield LiveFrame(f.index, f.time_s, f.image, max(due, time.monotonic()))

    loop = LiveLoop(model, RunOptions(device="cpu", key_policy=dff.FixedInterval(4)), LiveOptions("async"))
    results = list(loop.results(paced(clip[:20])))
    assert [r.frame_index for r in results] == list(range(20))  # this feed queues: every frame is processed
    assert results[0].is_key_frame and not any(r.is_key_frame for r in results[1:])
    assert len({r.key_index for r in results}) >= 2  # key states computed beside the loop took over
    assert all(r.ready_s >= r.arrival_s for r in results)
