"""End-to-end runs built on every other layer: the offline demos (toy and SmolLM2) and the figures of a
training run."""
