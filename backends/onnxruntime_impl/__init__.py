"""ONNX Runtime: an inference-only backend that runs the models `bench export` writes."""
