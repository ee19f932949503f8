"""Base models by name: hub names and local checkpoints (`loading`), and the embedded tiny base that is
pre-trained on the toy world by our own code (`tinybase`)."""
