"""VMB: the Video Model Benchmark."""

__version__ = "0.1.0"
