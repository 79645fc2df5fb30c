"""Sweep configs for `--mode=sweep`: each defines `get_config()` and `get_sweep()`."""
