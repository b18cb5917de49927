"""The DFF model: backbone, neck, RPN, RoI head, FlowNetSimple, flow warp, composed by `detector.py`."""
