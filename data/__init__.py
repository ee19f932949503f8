"""Data sets and lm-eval task YAMLs, shipped as `pat_lite.resources.data` (pat_lite.resources)."""
