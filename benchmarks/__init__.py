"""Benchmarks: `make bench` (see docs/benchmarks.md). Figures, never assertions."""
