"""Objects over time: offline Seq-NMS rescoring, online track ids, tracking metrics (see docs/tracking.md)."""

from dff.tracking.seq_nms import SeqNMSConfig, SeqNMSFrame, seq_nms

__all__ = ["SeqNMSConfig", "SeqNMSFrame", "seq_nms"]
