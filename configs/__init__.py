"""Training recipes and benchmark presets, shipped as `pat_lite.resources.configs` (pat_lite.resources)."""
