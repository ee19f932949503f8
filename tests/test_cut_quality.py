"""Cut quality (pat_lite.baselines.cut_quality): the untuned base with exactly one cut, the energy it keeps,
and the reference cuts (random, norm, energy, step-0 gradient, Fisher, PCA) it is compared with."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import tiny_model, token_batch

from pat_lite.baselines.cut_quality import Cut, apply_cut, energy_kept, reference_cuts, score_cuts
from pat_lite.core.residual import pca_rotation, residual_second_moment, rotate_residual
from pat_lite.core.slicing import norm_channels, zero_hidden_channels

#: As tests/test_merge.py: exact cuts agree to fp32 rounding (measured ≤ 2.2e-6).
TOLERANCE = 1e-4


def calibration():
    return [token_batch(batch=4, length=16, seed=seed) for seed in (41, 42)]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama-gqa")


@pytest.fixture(scope="module")
def cuts(model):
    return {cut.name: cut for cut in reference_cuts(model, calibration(), 48, random_draws=5)}


def test_a_coordinate_cut_is_the_base_with_the_other_channels_zeroed(model):
    kept = tuple(range(0, 64, 4)) + tuple(range(1, 64, 2))[:32]
    cut = Cut("some", tuple(sorted(set(kept))[:48]))
    zeroed = copy.deepcopy(model)
    zero_hidden_channels(zeroed, [c for c in range(64) if c not in cut.kept])
    ids = token_batch()
    with torch.no_grad():
        narrow = apply_cut(model, cut)
        assert narrow.config.hidden_size == 48
        assert (narrow(ids).logits - zeroed(ids).logits).abs().max().item() <= TOLERANCE


def test_a_rotated_cut_is_the_rotated_base_with_the_other_directions_zeroed(model):
    rotation, _ = pca_rotation(model, calibration())
    cut = Cut("pca", tuple(range(48)), rotation.float())
    rotated = rotate_residual(model, rotation)
    zero_hidden_channels(rotated, range(48, 64))
    ids = token_batch()
    with torch.no_grad():
        assert (apply_cut(model, cut)(ids).logits - rotated(ids).logits).abs().max().item() <= TOLERANCE


def test_energy_kept_is_a_share_and_pca_keeps_the_most(model, cuts):
    moment = residual_second_moment(model, calibration())
    assert energy_kept(moment, Cut("all", tuple(range(64)))) == pytest.approx(1.0)
    shares = {name: energy_kept(moment, cut) for name, cut in cuts.items()}
    assert all(0 < share < 1 for share in shares.values())
    coordinate = {name: share for name, share in shares.items() if name != "pca"}
    assert max(coordinate, key=coordinate.get) == "energy"  # the best coordinate set by construction
    assert shares["pca"] >= shares["energy"] - 1e-9  # Ky Fan: no d'-subspace holds more than the top PCs


def test_the_reference_cuts_are_the_criteria_they_name(model, cuts):
    assert sorted(cuts) == sorted(
        ["norm", "energy", "gradient", "fisher", "pca", *(f"random-{i}" for i in range(5))]
    )
    assert all(len(cut.kept) == 48 for cut in cuts.values())
    assert list(cuts["norm"].kept) == norm_channels(model, 48).tolist()
    assert len({cuts[f"random-{i}"].kept for i in range(5)}) == 5  # five different draws
    q = cuts["pca"].rotation
    torch.testing.assert_close(q.T @ q, torch.eye(64), atol=1e-5, rtol=0)


def test_scores_come_from_the_untuned_cut_models(model, cuts):
    widths = []

    def score(narrow) -> float:
        widths.append(narrow.config.hidden_size)
        return float(narrow.model.embed_tokens.weight.detach().abs().sum())

    moment = residual_second_moment(model, calibration())
    results = score_cuts(model, [cuts["norm"], cuts["pca"]], score, moment)
    assert set(results) == {"norm", "pca"} and widths == [48, 48]
    assert results["norm"]["energy_kept"] == pytest.approx(energy_kept(moment, cuts["norm"]))
