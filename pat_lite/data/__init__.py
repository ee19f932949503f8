"""Data, no models: the paper's prompt formats, instruction-tuning data (LaMini, local files, the toy
world's records) with its tokenization, and the embedded toy world."""
