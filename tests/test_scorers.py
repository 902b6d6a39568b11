"""The simple scorers: reproducible random, spatially even uniform, layer-0 attention ranking."""

from __future__ import annotations

import torch
from conftest import image, image_inputs, load_tiny
from hypothesis import given
from hypothesis import strategies as st

from explainprune import Compressor
from explainprune.prune import token_budget
from explainprune.scoring.uniform import lattice_indices, split_budget


@given(st.floats(min_value=1e-6, max_value=1.0), st.integers(min_value=1, max_value=5000))
def test_budget_is_rounded_share_at_least_one(keep_ratio, n):
    k = token_budget(keep_ratio, n)
    assert 1 <= k <= n and abs(k - max(1, round(keep_ratio * n))) == 0 or k == n


def test_random_is_reproducible_from_seed(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = image_inputs(processor, [image(224, 224)])
    kept = [
        Compressor(model, processor, scorer="random", keep_ratio=0.25, seed=seed).select(
            Compressor(model, processor).encode(**inputs)
        )[0]
        for seed in (1, 1, 2)
    ]
    assert torch.equal(kept[0], kept[1]) and not torch.equal(kept[0], kept[2])


def test_uniform_spreads_over_the_grid():
    chosen = torch.zeros(64, dtype=torch.bool)
    chosen[lattice_indices((1, 8, 8), 16)] = True
    chosen = chosen.view(8, 8)  # a quarter of the tokens: every other row and column
    assert int(chosen.sum()) == 16
    for quadrant in (chosen[:4, :4], chosen[:4, 4:], chosen[4:, :4], chosen[4:, 4:]):
        assert int(quadrant.sum()) == 4
    assert all(int(chosen[r : r + 2].sum()) == 4 for r in range(0, 8, 2))


@given(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12), st.floats(0.01, 1.0))
def test_uniform_picks_exactly_k_distinct_tokens(t, h, w, keep_ratio):
    k = token_budget(keep_ratio, t * h * w)
    chosen = lattice_indices((t, h, w), k)
    assert chosen.numel() == k == chosen.unique().numel() and int(chosen.max()) < t * h * w


def test_budget_is_shared_over_segments_by_size():
    assert split_budget(8, [16, 48]) == [2, 6] and split_budget(11, [16, 48]) == [3, 8] and sum(split_budget(7, [3, 3, 3])) == 7


def test_layer0_keeps_the_most_attended_tokens(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    inputs = image_inputs(processor, [image(56, 56)])
    compressor = Compressor(model, processor, scorer="layer0", keep_ratio=0.25)
    encoded = compressor.encode(**inputs)
    (scores,) = compressor.scorer.score(compressor.adapter, encoded)[0]
    span = encoded.spans[0][0]
    kept = compressor.select(encoded)[0]
    kept_scores = scores[torch.isin(span.positions, kept)]
    dropped_scores = scores[~torch.isin(span.positions, kept)]
    assert kept_scores.numel() == token_budget(0.25, span.num_tokens)
    assert kept_scores.min() >= dropped_scores.max()
