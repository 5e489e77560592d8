"""Driver, golden NumPy models, quantization helpers and workloads."""
