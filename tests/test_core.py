"""The core's contracts: the registry, selection as pure functions, merged tokens, `Prepared`."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import image, image_inputs, load_tiny

from explainprune import Compressor, ExplainPruneError, Prepared
from explainprune.adapters import EncodedBatch, VisualSpan
from explainprune.registry import Registry
from explainprune.scoring import SCORERS, Scorer, register
from explainprune.selection import Choice, kept_positions, span_budgets, top_k


def hand_made_batch() -> EncodedBatch:
    """One sample: 2 text tokens, a 2x3 image at positions 2..7, 2 text tokens; embeddings = position."""
    length = 10
    embeds = torch.arange(length, dtype=torch.float32).repeat(4, 1).T[None]
    span = VisualSpan("image", torch.arange(2, 8), [(1, 2, 3)])
    return EncodedBatch(
        input_ids=torch.zeros(1, length, dtype=torch.long),
        inputs_embeds=embeds,
        attention_mask=torch.ones(1, length, dtype=torch.long),
        position_ids=torch.arange(length)[None],
        spans=[[span]],
    )


def test_registry_refuses_a_duplicate_name_and_lists_known_ones():
    registry = Registry("widget")

    class A:
        name = "a"

    class B:
        name = "a"

    registry.register(A)
    registry.register(A)  # the same class again is harmless (module reloads)
    with pytest.raises(ExplainPruneError, match="widget named 'a' is already registered"):
        registry.register(B)
    with pytest.raises(ExplainPruneError, match="unknown widget 'b'; known widgets: a"):
        registry.get("b")


def test_a_scorer_registered_through_an_entry_point_is_usable_by_name(tmp_path, monkeypatch):
    package = tmp_path / "third_party_scorer.py"
    package.write_text(
        "import torch\nfrom explainprune.scoring import Scorer\n"
        "class LastFirst(Scorer):\n    name = 'last-first'\n"
        "    def score(self, adapter, encoded):\n"
        "        return [[torch.arange(s.num_tokens, dtype=torch.float32) for s in spans] for spans in encoded.spans]\n"
    )
    dist = tmp_path / "third_party_scorer-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-scorer\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[explainprune.scorers]\nlast-first = third_party_scorer:LastFirst\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("scorer", entry_point_group="explainprune.scorers")
    cls = registry.get("last-first")
    encoded = hand_made_batch()
    (choice,) = cls().choose(None, encoded, span_budgets(encoded, 0.5))[0]
    assert sorted(choice.indices.tolist()) == [3, 4, 5]
    sys.modules.pop("third_party_scorer", None)


def test_the_builtin_registry_refuses_to_overwrite_a_scorer():
    class Impostor(Scorer):
        name = "layer0"

    with pytest.raises(ExplainPruneError, match="already registered"):
        register(Impostor)
    assert SCORERS.get("layer0").__name__ == "Layer0Scorer"


def test_top_k_refuses_nan_scores():
    span = VisualSpan("image", torch.arange(4), [(1, 2, 2)])
    assert sorted(top_k(torch.tensor([0.1, 0.9, 0.5, 0.2]), span, 2).indices.tolist()) == [1, 2]
    with pytest.raises(ExplainPruneError, match="NaN scores"):
        top_k(torch.tensor([0.1, float("nan"), 0.5, 0.2]), span, 2)


def test_kept_positions_keep_text_and_the_chosen_visual_tokens_in_order():
    encoded = hand_made_batch()
    (kept,) = kept_positions(encoded, [[Choice(torch.tensor([4, 0]))]])
    assert kept.tolist() == [0, 1, 2, 6, 8, 9]


class MergeIntoTwo(Scorer):
    """A hand-made merging scorer: keeps the first token of each row, replaced by the row's mean."""

    name = "test-merge-rows"

    def choose(self, adapter, encoded, budgets):
        choices = []
        for b, spans in enumerate(encoded.spans):
            row = []
            for span in spans:
                _, h, w = span.grids[0]
                rows = encoded.inputs_embeds[b, span.positions].view(h, w, -1)
                row.append(Choice(torch.arange(h) * w, rows.mean(1)))
            choices.append(row)
        return choices


def test_merged_tokens_keep_their_own_positions_and_carry_the_merged_embeddings(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = image_inputs(processor, [image(56, 56)])
    compressor = Compressor(model, processor, scorer=MergeIntoTwo(), keep_ratio=0.5)
    encoded = compressor.encode(**inputs)
    (span,) = encoded.spans[0]
    _, h, w = span.grids[0]
    compressor.keep_ratio = h / span.num_tokens  # budget = one token per row
    prepared = compressor.prepare_encoded(encoded)
    kept = prepared.kept[0]
    row_starts = span.positions[torch.arange(h) * w]
    assert torch.isin(row_starts, kept).all() and int(torch.isin(span.positions, kept).sum()) == h
    at = {int(p): i for i, p in enumerate(kept)}
    offset = prepared["inputs_embeds"].shape[1] - kept.numel()
    for r, position in enumerate(row_starts.tolist()):
        merged = encoded.inputs_embeds[0, span.positions[r * w : (r + 1) * w]].mean(0)
        assert torch.allclose(prepared["inputs_embeds"][0, offset + at[position]], merged, atol=1e-6)
        assert torch.equal(prepared["position_ids"][:, 0, offset + at[position]], encoded.position_ids[:, 0, position])
    text = int(kept[-1])
    assert torch.equal(prepared["inputs_embeds"][0, -1], encoded.inputs_embeds[0, text])


def test_prepared_is_a_mapping_of_model_inputs_with_its_own_stats(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    inputs = image_inputs(processor, [image(56, 56)])
    prepared = Compressor(model, processor, scorer="uniform", keep_ratio=0.25).prepare(**inputs)
    assert isinstance(prepared, Prepared)
    assert sorted(dict(prepared)) == ["attention_mask", "inputs_embeds", "position_ids"]
    assert prepared.stats.visual_after[0] < prepared.stats.visual_before[0]
    with torch.no_grad():
        model(**prepared)


def test_keep_ratio_and_scorer_are_validated_when_reassigned(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    compressor = Compressor(model, processor, scorer="uniform", keep_ratio=0.5)
    for bad in (0, 1.5, "half", float("nan"), None):
        with pytest.raises(ExplainPruneError, match="keep_ratio"):
            compressor.keep_ratio = bad
    with pytest.raises(ExplainPruneError, match="unknown scorer"):
        compressor.scorer = "atention"
    with pytest.raises(ExplainPruneError, match="registered name or a Scorer"):
        compressor.scorer = 3
    assert compressor.keep_ratio == 0.5 and compressor.scorer.name == "uniform"


def test_a_scorer_that_breaks_its_budget_is_refused(tiny_dirs):
    class TooMany(Scorer):
        name = "test-too-many"

        def choose(self, adapter, encoded, budgets):
            return [[Choice(torch.arange(span.num_tokens)) for span in spans] for spans in encoded.spans]

    model, processor = load_tiny(tiny_dirs, "llava")
    compressor = Compressor(model, processor, scorer=TooMany(), keep_ratio=0.5)
    with pytest.raises(ExplainPruneError, match="must return exactly k distinct"):
        compressor.prepare(**image_inputs(processor, [image(56, 56)]))
