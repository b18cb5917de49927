"""Objects over time: offline Seq-NMS rescoring, online track ids, tracking metrics (see docs/tracking.md).

Online tracking and the metrics need the optional ``track`` extra (``trackers``, ``supervision``, ``trackeval``);
they import it when used and raise a one-line DFFError naming the extra when it is missing.
"""

from dff.tracking.metrics import (
    PROTOCOLS,
    FrameTracks,
    TrackingMetrics,
    TrackingScores,
    evaluate_tracking,
    format_tracking,
)
from dff.tracking.online import TRACKERS, UNTRACKED, OnlineTracker, TrackerConfig, track
from dff.tracking.seq_nms import BENCHMARKED, SeqNMSConfig, SeqNMSFrame, seq_nms, seq_nms_results

__all__ = [
    "BENCHMARKED",
    "PROTOCOLS",
    "TRACKERS",
    "UNTRACKED",
    "FrameTracks",
    "OnlineTracker",
    "SeqNMSConfig",
    "SeqNMSFrame",
    "TrackerConfig",
    "TrackingMetrics",
    "TrackingScores",
    "evaluate_tracking",
    "format_tracking",
    "seq_nms",
    "seq_nms_results",
    "track",
]
