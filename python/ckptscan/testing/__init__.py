"""Test checkpoints in the layouts real producers write (needs safetensors and ml_dtypes)."""
