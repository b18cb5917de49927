"""Why sync beats async in streaming AP on the simulated R-50 CPU clock (BENCHMARKS.md, "Live video"): for each
shown frame of a synthetic val set, how old the detections scored for it are (frames since the frame they are of)
and how far their features were warped (that frame minus its key frame), per key mode.

    python benchmarks/streaming_warp_distance.py /tmp/stream/s26 [--profile benchmarks/results/r50_cpu_profile.json]

The set as `dff make-synthetic ... --convert` writes it; the bundled tiny model, 25 fps, key policies fixed 5 and
adaptive 5.
"""

import argparse
import statistics
from pathlib import Path

import dff
from dff.cli.demo import MODEL_PATH
from dff.data.cocovid import CocoVID
from dff.evaluation.streaming import pair_outputs, shown_times
from dff.evaluation.streaming_run import StreamingOptions, VideoFrames, stream_video
from dff.live.clock import RuntimeProfile
from dff.run import RunOptions

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("root", type=Path)
p.add_argument("--profile", type=Path, default=Path(__file__).parent / "results" / "r50_cpu_profile.json")
args = p.parse_args()
root = args.root
model = dff.load(MODEL_PATH)
ds = CocoVID.load(root / "annotations" / "imagenet_vid_val.json")
profile = RuntimeProfile.load(args.profile)
for name, policy in [("k=5", dff.FixedInterval(5)), ("adaptive 5", dff.Adaptive(5))]:
    for mode in ("sync", "async"):
        opts = StreamingOptions(25.0, "simulated", mode, profile)
        stale, warp, keys = [], [], []
        for _, images in ds.iter_videos():
            frames = VideoFrames(images, root / "Data" / "VID", 25.0)
            outs, _ = stream_video(model, RunOptions(device="cpu", key_policy=policy), frames, opts)
            times = shown_times(range(len(images)), 25.0)
            for i, j in enumerate(pair_outputs(times, [r.ready_s for r in outs])):
                if j is None:
                    continue
                f = outs[j].frame_index
                stale.append(i - f)
                warp.append(f - outs[j].key_index)
            keys.append(len({r.key_index for r in outs}))
        age, dist = statistics.mean(stale), statistics.mean(warp)
        print(
            f"{root.name} {name} {mode}: shown detections' age mean {age:.1f} frames; "
            f"warp distance mean {dist:.1f}, median {statistics.median(warp)}; key frames {sum(keys)}"
        )
