"""Statecast's training side: stacked-LSTM forecasters trained offline with PyTorch and
exported to ONNX single-step models for the scorer."""

__all__: list[str] = []
