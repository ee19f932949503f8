"""Benchmarks (never timed in tests): dense vs pruned inference speed and memory (`inference`), PAT vs
LoRA training cost (`training_cost`); shared model shapes and measurement helpers in `common`."""
