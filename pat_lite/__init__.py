"""pat_lite — PAT (Pruning-Aware Tuning, Liu et al., AAAI 2025) on stock transformers + peft."""
