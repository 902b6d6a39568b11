"""The peers' scorers on every family (budget exact, deterministic, batch equals singles) and on
hand-made cases whose right answer is known; in-LLM DART against the unpruned model."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import greedy, image, image_inputs, load_tiny, video, video_inputs

from explainprune import Compressor
from explainprune.adapters import get_adapter
from explainprune.bench.cli import untrained_predictor
from explainprune.errors import ExplainPruneError
from explainprune.predictor import Predictor
from explainprune.prune import token_budget
from explainprune.scoring.cdpruner import conditional_kernel, greedy_dpp_map, instruction_relevance
from explainprune.scoring.dart import duplication_aware_choice, even_shares
from explainprune.scoring.divprune import max_min_diversity
from explainprune.scoring.learned_mmr import maximal_marginal_relevance
from explainprune.scoring.scope import saliency_coverage
from explainprune.scoring.similarity import cosine_similarity_matrix, spatial_kernel, token_places
from explainprune.scoring.visionzip import dominant_and_contextual
from explainprune.scoring.vispruner import important_then_diverse
from explainprune.selection import span_budgets

INPUT_STAGE_PEERS = ("divprune", "cdpruner", "scope", "visionzip", "vispruner", "dart-input", "learned-mmr", "learned-coverage")
LEARNED_PEERS = ("learned-mmr", "learned-coverage")
LAYER = 1  # the tiny models have 2 decoder layers


def options(name, model):
    return {"predictor": untrained_predictor(model)} if name in LEARNED_PEERS else {}


def pair(processor):
    images, questions = [image(150, 100, seed=1), image(90, 120, seed=2)], ["what colour is the circle?", "is there a square?"]
    return image_inputs(processor, images, questions), [image_inputs(processor, [i], [q]) for i, q in zip(images, questions)]


def kept_visual(compressor, inputs):
    """Per sample, per span: the kept sequence positions of the span and their embeddings."""
    encoded = compressor.encode(**inputs)
    choices = compressor.choose(encoded)
    prepared = compressor.prepare_encoded(encoded)
    result = []
    for b, spans in enumerate(encoded.spans):
        sample = []
        for span, choice in zip(spans, choices[b]):
            positions = span.positions[choice.indices]
            rows = torch.isin(prepared.kept[b], positions)
            offset = prepared.inputs_embeds.shape[1] - prepared.kept[b].numel()
            sample.append((positions.sort().values, prepared.inputs_embeds[b, offset:][rows], span.num_tokens))
        result.append(sample)
    return result


@pytest.mark.parametrize("name", INPUT_STAGE_PEERS)
def test_peer_keeps_its_budget_deterministically_and_batch_equals_singles(tiny, name):
    model, processor = tiny
    batch, singles = pair(processor)
    compressor = Compressor(model, processor, scorer=name, keep_ratio=0.25, **options(name, model))
    first = kept_visual(compressor, batch)
    second = kept_visual(compressor, batch)
    for b, spans in enumerate(first):
        for (positions, embeds, n), (again, again_embeds, _) in zip(spans, second[b]):
            assert positions.numel() == positions.unique().numel() == token_budget(0.25, n)
            assert torch.equal(positions, again) and torch.equal(embeds, again_embeds)
        (alone,) = kept_visual(compressor, singles[b])
        offset = int(batch["input_ids"].shape[1] - singles[b]["input_ids"].shape[1])  # left padding
        for (positions, embeds, _), (single_positions, single_embeds, _) in zip(spans, alone):
            assert torch.equal(positions - offset, single_positions)
            assert torch.allclose(embeds, single_embeds, atol=1e-5)
    assert greedy(compressor, batch, n=2).shape == (2, batch["input_ids"].shape[1] + 2)


def test_divprune_keeps_one_token_of_each_cluster():
    centres = torch.eye(3, 8)
    features = centres[torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])]
    chosen = max_min_diversity(cosine_similarity_matrix(features), 3)
    assert sorted(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])[chosen].tolist()) == [0, 1, 2]


def test_dpp_avoids_the_cluster_irrelevant_to_the_instruction():
    # Clusters 0 and 1 share a direction with the instruction; cluster 2 is orthogonal to it.
    directions = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    visual = directions[labels] + 0.01 * torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    instruction = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    relevance = instruction_relevance(visual, instruction)
    chosen = greedy_dpp_map(conditional_kernel(visual, relevance), 2)
    assert sorted(labels[chosen].tolist()) == [0, 1]


def test_dpp_map_equals_the_exhaustive_greedy_on_log_determinants():
    features = torch.randn(10, 5, generator=torch.Generator().manual_seed(1))
    kernel = conditional_kernel(features, torch.rand(10, generator=torch.Generator().manual_seed(2)) + 0.1)
    chosen: list[int] = []
    for _ in range(4):  # the greedy MAP by brute force: the item that maximises log det(L_S)
        gains = [
            torch.logdet(kernel[chosen + [j]][:, chosen + [j]]) if j not in chosen else torch.tensor(-float("inf"))
            for j in range(10)
        ]
        chosen.append(int(torch.argmax(torch.stack(gains))))
    assert greedy_dpp_map(kernel, 4).tolist() == chosen


def test_scope_trades_coverage_against_saliency():
    # Tokens 0-2 are one object (similar), 3 a different one. Saliency favours 0, then 1.
    similarity = torch.tensor(
        [[1.0, 0.9, 0.9, 0.0], [0.9, 1.0, 0.9, 0.0], [0.9, 0.9, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    saliency = torch.tensor([0.4, 0.3, 0.1, 0.2])
    # Gains x saliency: token 0 covers 2.8 (x 0.4 = 1.12); then token 1 adds 0.1 (x 0.3), token 3 adds 1.0 (x 0.2).
    assert saliency_coverage(similarity, saliency, 2).tolist() == [0, 3]
    assert torch.topk(saliency, 2).indices.tolist() == [0, 1]  # what saliency alone would keep
    # With alpha = 0 only coverage counts: the first of the three equal gains, then the other object.
    assert saliency_coverage(similarity, saliency.flip(0), 2, alpha=0.0).tolist() == [0, 3]


@pytest.mark.parametrize("spatial", [0.0, 0.3])
def test_learned_coverage_is_scopes_coverage_over_the_learned_relevance(tiny, spatial):
    model, processor = tiny
    batch, _ = pair(processor)
    predictor = untrained_predictor(model)
    compressor = Compressor(
        model, processor, scorer="learned-coverage", keep_ratio=0.25, predictor=predictor, alpha=0.5, spatial=spatial
    )
    learned = Compressor(model, processor, scorer="learned", predictor=predictor)
    encoded = compressor.encode(**batch)
    relevance = learned.score(encoded)
    for b, (spans, choices) in enumerate(zip(encoded.spans, compressor.choose(encoded))):
        for span, choice, scores in zip(spans, choices, relevance[b]):
            similarity = cosine_similarity_matrix(encoded.inputs_embeds[b, span.positions])
            if spatial:  # a hand-written Gaussian of the cell centres' distance, in units of each grid's shorter side
                cells = [
                    ((r + 0.5) / min(height, width), (c + 0.5) / min(height, width))  # cell centres
                    for steps, height, width in span.grids
                    for _ in range(steps)
                    for r in range(height)
                    for c in range(width)
                ]
                distance = torch.tensor([[math.dist(p, q) for q in cells] for p in cells])
                similarity = similarity * torch.exp(-(distance**2) / (2 * spatial**2))
            expected = saliency_coverage(similarity, scores, token_budget(0.25, span.num_tokens), alpha=0.5)
            assert choice.indices.tolist() == expected.tolist()


def test_spatial_coverage_spreads_over_a_uniform_background():
    # 36 identical tokens of a 6 x 6 grid, equal relevance: plain cosine coverage is full after one token
    # and then takes the next indices (a corner's row); with the spatial kernel each pick covers only its
    # neighbourhood, so 4 picks land one per 3 x 3 quadrant.
    cosine = torch.ones(36, 36)
    relevance = torch.full((36,), 1 / 36)
    assert saliency_coverage(cosine, relevance, 4).tolist() == [0, 1, 2, 3]
    picks = saliency_coverage(cosine * spatial_kernel([(1, 6, 6)], 0.15), relevance, 4)
    quadrants = {(int(i) // 6 // 3, int(i) % 6 // 3) for i in picks}
    assert quadrants == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_token_places_share_the_picture_across_patches_and_grids():
    places = token_places([(2, 2, 3), (1, 4, 6)])
    assert places.shape == (12 + 24, 2)
    assert torch.equal(places[:6], places[6:12])  # a temporal patch sits where the others do
    # the 2 x 3 grid and the 4 x 6 grid cover the same picture: their corners' cells nest
    assert places[:6].amax(0).tolist() == pytest.approx([0.75, 1.25])
    assert places[12:].amax(0).tolist() == pytest.approx([0.875, 1.375])
    assert places[12:].amin(0).tolist() == pytest.approx([0.125, 0.125])


def test_learned_coverage_refuses_a_negative_spatial_width(tiny):
    model, _ = tiny
    with pytest.raises(ExplainPruneError, match="spatial must be a number >= 0"):
        Compressor(model, scorer="learned-coverage", predictor=untrained_predictor(model), spatial=-1)


def test_vispruner_keeps_the_salient_half_then_drops_duplicates():
    # Saliency ranks 5 > 4 > 3 > 2 > 1 > 0; token 3 duplicates token 2.
    saliency = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2], [-1.0, 0.21], [1.0, 1.0], [1.0, -1.0]])
    # k = 5: important = int(2.5) = 2 (tokens 5, 4); residual by saliency [3, 2, 1, 0] must lose one:
    # A = [3, 1], B = [2, 0]; token 3 is the A token most similar to some B token.
    chosen = important_then_diverse(saliency, cosine_similarity_matrix(features), 5)
    assert chosen.tolist() == [5, 4, 1, 2, 0]


def test_visionzip_merges_each_contextual_group_into_its_centre():
    embeds = torch.arange(16, dtype=torch.float32)[:, None] * torch.tensor([1.0, -2.0, 0.5])
    saliency = torch.arange(16, dtype=torch.float32)  # dominant: the most salient, 15, 14, ...
    # k = 7 of 8: contextual = round(7 * 10 / 64) = 1, dominant 6 (7..2); the rest [0, 1] form one
    # group centred on token 0, which becomes the mean of tokens 0 and 1.
    keys = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    choice = dominant_and_contextual(saliency[:8], keys, embeds[:8], 7)
    assert choice.indices.tolist() == [7, 6, 5, 4, 3, 2, 0]
    assert torch.equal(choice.embeds[:6], embeds[[7, 6, 5, 4, 3, 2]])
    assert torch.allclose(choice.embeds[6], embeds[[0, 1]].mean(0))
    # k = 10 of 16: contextual = 2, dominant 8 (15..8); rest 0..7, step 4: centres 0 and 4. Keys put
    # 1 and 3 with centre 0, and 2, 5, 6, 7 with centre 4.
    keys = torch.tensor([[1.0, 0.0]] * 16)
    keys[[2, 4, 5, 6, 7]] = torch.tensor([0.0, 1.0])
    keys[[1, 3]] = torch.tensor([1.0, 0.1])
    choice = dominant_and_contextual(saliency, keys, embeds, 10)
    assert choice.indices.tolist() == [15, 14, 13, 12, 11, 10, 9, 8, 0, 4]
    assert torch.allclose(choice.embeds[8], embeds[[0, 1, 3]].mean(0))
    assert torch.allclose(choice.embeds[9], embeds[[2, 4, 5, 6, 7]].mean(0))


def test_visionzip_centres_keep_their_positions_and_get_merged_embeddings(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = image_inputs(processor, [image(224, 224)])
    compressor = Compressor(model, processor, scorer="visionzip", keep_ratio=0.5)
    encoded = compressor.encode(**inputs)
    (choice,) = compressor.choose(encoded)[0]
    prepared = compressor.prepare_encoded(encoded)
    (span,) = encoded.spans[0]
    k = token_budget(0.5, span.num_tokens)
    dominant = k - round(k * 10 / 64)
    rows = {position: row for row, position in enumerate(prepared.kept[0].tolist())}
    for i, position in enumerate(span.positions[choice.indices].tolist()):
        row = rows[position]
        assert torch.equal(prepared.position_ids[:, 0, row], encoded.position_ids[:, 0, position])
        assert torch.equal(prepared.inputs_embeds[0, row], choice.embeds[i].to(prepared.inputs_embeds.dtype))
        merged = not torch.equal(prepared.inputs_embeds[0, row], encoded.inputs_embeds[0, position])
        assert merged == (i >= dominant)  # centres absorb at least one other token here


def test_dart_shares_the_budget_over_pivots_and_keeps_what_differs_from_them():
    assert even_shares(10, 4) == [3, 3, 2, 2] and even_shares(3, 0) == []
    # Sequence: visual tokens at 0..5, text at 6..7. Key norms make 0 the visual pivot and 7 the text one.
    states = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0], [-1.0, 0.0], [0.7, 0.7], [0.0, 1.0], [1.0, 0.0]])
    norms = torch.tensor([9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0])
    chosen = duplication_aware_choice(states, norms, torch.arange(6), torch.tensor([6, 7]), 3, 1, 1)
    # Visual pivot 0 keeps the token least similar to (1, 0): 4; text pivot 7 (also (1, 0)) the next: 2.
    assert chosen.tolist() == [0, 4, 2]


def test_mmr_interpolates_between_relevance_and_diversity():
    relevance = torch.tensor([1.0, 0.9, 0.8, 0.1])
    similarity = cosine_similarity_matrix(torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, 0.02], [0.0, 1.0]]))
    assert maximal_marginal_relevance(relevance, similarity, 2, 1.0).tolist() == [0, 1]  # plain top-k
    assert maximal_marginal_relevance(relevance, similarity, 2, 0.5).tolist() == [0, 3]  # the distinct one


@pytest.mark.parametrize("family", ["qwen2-vl", "llava"])
def test_in_llm_dart_at_keep_one_equals_model_generate(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    batch, _ = pair(processor)
    dart = Compressor(model, processor, scorer="dart", keep_ratio=1.0, layer=LAYER)
    assert torch.equal(greedy(model, batch, n=6), greedy(dart, batch, n=6))


def test_in_llm_dart_keeps_the_budget_from_layer_k_and_batch_equals_singles(tiny):
    model, processor = tiny
    batch, singles = pair(processor)
    compressor = Compressor(model, processor, scorer="dart", keep_ratio=0.25, layer=LAYER)
    encoded = compressor.encode(**batch)
    state = compressor.scorer.prefill(compressor.adapter, encoded, 0.25)
    budgets = span_budgets(encoded, 0.25)
    for b, spans in enumerate(encoded.spans):
        for span, k in zip(spans, budgets[b]):
            assert int(torch.isin(state.kept[b], span.positions).sum()) == k
        alone = compressor.scorer.prefill(compressor.adapter, compressor.encode(**singles[b]), 0.25)
        offset = int(batch["input_ids"].shape[1] - singles[b]["input_ids"].shape[1])
        assert torch.equal(state.kept[b] - offset, alone.kept[0])


def test_mask_oracle_keeps_the_question_objects_first(tiny_dirs):
    from explainprune.data import load_samples, make_inputs
    from explainprune.data.synthetic import question_relevance
    from explainprune.scoring.mask_oracle import MaskOracle, cell_means

    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    samples = load_samples("synthetic:split=val,seed=0,n=6,size=224")
    compressor = Compressor(model, processor, scorer=MaskOracle.for_samples(samples), keep_ratio=0.25)
    encoded = compressor.encode(**make_inputs(processor, samples))
    for sample, spans, choices in zip(samples, encoded.spans, compressor.choose(encoded)):
        (span,), (choice,) = spans, choices
        _, height, width = span.grids[0]
        coverage = cell_means(question_relevance(sample), height, width)
        kept = torch.zeros(span.num_tokens, dtype=torch.bool)
        kept[choice.indices] = True
        assert coverage[kept].min() >= coverage[~kept].max()
        assert coverage[kept].max() > 0.5  # the question's objects are there to be kept
    with pytest.raises(Exception, match="one pixel relevance map per sample"):
        Compressor(model, processor, scorer="mask-oracle", keep_ratio=0.25).choose(encoded)


def test_mask_oracle_spreads_the_leftover_budget_over_the_grid():
    """Background ties go coarse-to-fine: a quarter of a blank 8x8 grid is its even 2x2 lattice; with one
    relevant token, that token comes first and the rest of the budget still spreads."""
    from explainprune.scoring.mask_oracle import MaskOracle
    from explainprune.adapters.base import VisualSpan

    span = VisualSpan(positions=torch.arange(64), grids=[(1, 8, 8)], modality="image")
    blank = MaskOracle().pick(torch.zeros(64), span, 16).indices
    assert sorted(blank.tolist()) == [r * 8 + c for r in range(0, 8, 2) for c in range(0, 8, 2)]
    scores = torch.zeros(64)
    scores[9] = 1.0
    chosen = MaskOracle().pick(scores, span, 4).indices.tolist()
    assert chosen == [9, 0, 4, 32]


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "llava-onevision"])
@pytest.mark.parametrize("name", ["scope", "visionzip", "vispruner"])
def test_saliency_peers_prune_videos_within_budget(tiny_dirs, family, name):
    model, processor = load_tiny(tiny_dirs, family)
    compressor = Compressor(model, processor, scorer=name, keep_ratio=0.25)
    encoded = compressor.encode(**video_inputs(processor, [video(), video(seed=1)]))
    for spans, choices, budgets in zip(encoded.spans, compressor.choose(encoded), span_budgets(encoded, 0.25)):
        (span,), (choice,), (k,) = spans, choices, budgets
        assert span.modality == "video" and choice.indices.unique().numel() == k


def test_dpp_map_fills_the_budget_when_the_kernel_rank_is_exhausted():
    # 12 tokens in a 3-d space: at most 3 add volume; the rest of the budget follows relevance.
    features = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    relevance = torch.linspace(0.1, 1.0, 12)
    chosen = greedy_dpp_map(conditional_kernel(features, relevance), 8)
    assert chosen.numel() == chosen.unique().numel() == 8
    rest = [i for i in range(12) if i not in chosen[:3].tolist()]
    assert sorted(chosen[3:].tolist()) == sorted(sorted(rest, key=lambda i: -relevance[i])[:5])


def test_mask_oracle_on_clips_ranks_the_asked_object_in_the_asked_frames_first(tiny_dirs):
    """`colour_end` asks for an object's colour in its last shown frame, `appears` for the object that shows
    up last: the oracle's best token lies on that object, in the temporal patch of that frame."""
    from explainprune.data import load_samples, make_inputs
    from explainprune.data.synthetic_video import HOLD, visible_frames
    from explainprune.scoring.mask_oracle import MaskOracle

    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    samples = [
        s for s in load_samples("synthetic-video:split=val,seed=0,n=12,size=224,frames=8") if s.qtype in ("colour_end", "appears")
    ]
    oracle = MaskOracle.for_samples(samples)
    compressor = Compressor(model, processor, scorer=oracle, keep_ratio=0.1)
    encoded = compressor.encode(**make_inputs(processor, samples))
    for sample, (scores,), (span,) in zip(samples, oracle.score(compressor.adapter, encoded), encoded.spans):
        steps, height, width = span.grids[0]
        if sample.qtype == "colour_end":
            (index,) = [i for i, o in enumerate(sample.objects) if o["shape"] in sample.question and o["boxes"][-1]]
            frame = visible_frames(sample.objects[index])[-1]
        else:
            first_seen = [visible_frames(o)[0] for o in sample.objects]
            index = first_seen.index(max(first_seen))
            frame = first_seen[index]
        step, cell = divmod(int(scores.argmax()), height * width)
        row, col = divmod(cell, width)
        rows, cols = sample.mask.shape[1:]
        region = sample.mask[frame, row * rows // height : (row + 1) * rows // height, col * cols // width : (col + 1) * cols // width]
        assert step == frame // HOLD and (region == index).any(), sample.id
    assert len(compressor.choose(encoded)) == len(samples)


@pytest.mark.parametrize("family", ["qwen2-vl", "llava-onevision"])
def test_learned_coverage_on_clips_covers_each_place_once_across_patches(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    predictor = Predictor(
        {"arch": "grid", "n_heads": model.config.get_text_config().num_attention_heads,
         "fingerprint": get_adapter(model).fingerprint, "modality": "video"}
    ).eval()
    compressor = Compressor(model, processor, scorer="learned-coverage", keep_ratio=0.25, predictor=predictor, spatial=0.3)
    learned = Compressor(model, processor, scorer="learned", predictor=predictor)
    encoded = compressor.encode(**video_inputs(processor, [video(), video(seed=1)]))
    relevance = learned.score(encoded)
    for b, ((span,), (choice,), (k,)) in enumerate(zip(encoded.spans, compressor.choose(encoded), span_budgets(encoded, 0.25))):
        assert span.modality == "video" and choice.indices.unique().numel() == k
        # the same place in every temporal patch: distance 0 whatever the patch
        cells = [
            ((r + 0.5) / min(height, width), (c + 0.5) / min(height, width))
            for steps, height, width in span.grids
            for _ in range(steps)
            for r in range(height)
            for c in range(width)
        ]
        distance = torch.tensor([[math.dist(p, q) for q in cells] for p in cells])
        similarity = cosine_similarity_matrix(encoded.inputs_embeds[b, span.positions]) * torch.exp(-(distance**2) / (2 * 0.3**2))
        assert choice.indices.tolist() == saliency_coverage(similarity, relevance[b][0], k, alpha=0.5).tolist()
