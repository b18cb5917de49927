"""Input and output of videos and results: frame sources, result writers and drawing."""

from dff.io.sources import Frame, FrameSource, open_source

__all__ = ["Frame", "FrameSource", "open_source"]
