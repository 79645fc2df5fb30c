"""Speed benchmarks: `python -m benchmarks.benchmark` (see benchmarks/README.md)."""
