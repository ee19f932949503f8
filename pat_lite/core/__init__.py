"""The method, readable top to bottom (docs/method.md §2-§8):

1. `config`  — `PATConfig`, every knob with the paper's defaults;
2. `arch`    — which models can be pruned, and which narrower widths they can hold;
3. `mask`    — the one global channel mask: gate schedules τ(s), β(s) (released / paper), STE, sparsity loss;
4. `hsm`     — the Hybrid Sparsification Module z = s ⊙ M ⊙ (D·y) and its identity loss;
5. `slicing` — cut hidden channels out of a plain model exactly, and the norm criterion that picks them;
6. `attach`  — hooks that put the HSMs and the mask on a stock transformers model;
7. `merge`   — fold the HSMs into the weights and slice: an ordinary, narrower dense model, exactly;
8. `identity` — the fingerprint of a base model's weights, which a saved PAT state records.

Nothing here imports from the rest of pat_lite but `utils` (errors, type conversion): training,
evaluation and the studies build on this.
"""
