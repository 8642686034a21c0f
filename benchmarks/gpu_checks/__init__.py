"""The checks of ``benchmarks/gpu_check.py`` (one module per check; see that script)."""
