"""Data, no models: the paper's prompt formats, instruction-tuning data (LaMini, local files, the toy world's
records, the real-text records) with its tokenization, the embedded toy world, and the real-text builder
(CPython's reference manual and docstrings, `realtext`)."""
