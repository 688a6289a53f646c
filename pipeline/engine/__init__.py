"""The compute core: per-stream state, the online normaliser, anomaly scoring, batched
ONNX steps, the model registry and the served model. Imports no Kafka client (a test
checks it), so training, evaluation and benchmarks run it without a broker."""
