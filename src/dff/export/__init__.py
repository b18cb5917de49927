"""Deployment: the three DFF stages exported to ONNX and run with onnxruntime."""
