"""Benchmarks that drive the test fakes (run from a checkout: `make bench-poison`)."""
