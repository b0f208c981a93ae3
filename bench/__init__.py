"""Benchmark scripts: they print figures and ratios; speed claims live here, not in tests."""
