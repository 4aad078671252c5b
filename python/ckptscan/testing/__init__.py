"""Servers and helpers for tests and benchmarks (loopback only; nothing here runs in a scan)."""
