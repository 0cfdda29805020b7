"""Benchmarks: scripts that print figures (`make bench`); not run by the tests."""
