"""End-to-end runs built on every other layer: the offline demo and the figures of a training run."""
