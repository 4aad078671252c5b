"""Helpers for tests and benchmarks, never used by a scan: servers started on
loopback (an emulated Hub, S3), quantizers, and checkpoint writers in the layouts
real producers write (those need safetensors and ml_dtypes)."""
