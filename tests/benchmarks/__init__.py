"""Smoke tests of the benchmark suite (benchmarks/), so it cannot rot."""
