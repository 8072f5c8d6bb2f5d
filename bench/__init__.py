"""Benchmarks: `python -m bench` (or ./scripts/bench) measures endcontact against baselines."""
