"""End-to-end runs built on every other layer: the offline demos (toy and SmolLM2), and what the notebooks
show (their setup, pat_lite's source on the page, the tables and figures of training runs, evaluations and
ablations)."""
