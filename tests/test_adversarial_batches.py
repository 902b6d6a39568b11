"""Hostile batches through the API: any mix of text-only, image, several-image and video prompts,
either padding side, tiny and extreme image sizes, every scorer at any keep ratio.

The rule: the batch works and each sample gets what it gets alone (and at keep 1.0 what the
unpruned model generates), or the input is refused with one line of ours.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import VIDEO_FAMILIES, image, load_tiny, prompt, video
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import assert_same_as_alone, greedy, new_tokens, small_predictor

from explainprune import Compressor, ExplainPruneError
from explainprune.predictor import PredictorMismatchError
from explainprune.prune import token_budget
from explainprune.tiny import FAMILIES

# Few examples by default (the suite stays fast, the same each run); a deeper search:
# EXPLAINPRUNE_HYPOTHESIS_EXAMPLES=500 pytest tests/test_adversarial_batches.py
HYPOTHESIS = settings(
    max_examples=int(os.environ.get("EXPLAINPRUNE_HYPOTHESIS_EXAMPLES", "20")),
    deadline=None,
    derandomize="EXPLAINPRUNE_HYPOTHESIS_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# What one prompt holds, in order (each family takes what its processor takes).
PROMPT_KINDS = {
    "qwen2-vl": [(), ("image",), ("image", "image"), ("video",), ("image", "video")],
    "qwen2.5-vl": [(), ("image",), ("image", "image"), ("video",), ("image", "video")],
    "llava-onevision": [(), ("image",), ("image", "image"), ("video",)],
    "llava": [(), ("image",), ("image", "image")],
}
DETERMINISTIC = ("layer0", "learned", "uniform", "gae", "fastv")  # a sample's choice depends on it alone
SIZES = st.one_of(
    st.tuples(st.integers(1, 120), st.integers(1, 120)),
    st.sampled_from([(1, 1), (2, 150), (150, 2), (3, 500), (500, 3), (28, 28), (29, 57)]),  # tiny, aspect ratio < 200
)
QUESTIONS = st.sampled_from(["what colour is the circle?", "how many?", "¿qué forma tiene? 🔺", "is there a red square left of the blue one"])


@st.composite
def batches(draw, families=FAMILIES):
    family = draw(st.sampled_from(families))
    prompts = draw(st.lists(st.tuples(st.sampled_from(PROMPT_KINDS[family]), QUESTIONS), min_size=1, max_size=3))
    sizes = [[(*draw(SIZES), draw(st.integers(0, 99))) for _ in kinds] for kinds, _ in prompts]  # width, height, seed
    frames = draw(st.sampled_from([2, 4]))
    return family, prompts, sizes, frames


def processed(processor, prompts, sizes, frames, padding_side="left"):
    """Processor inputs of the prompts (one BatchFeature), with images of the given (width, height, seed)
    and videos of the given seed."""
    texts, images, videos = [], [], []
    for (kinds, question), kind_sizes in zip(prompts, sizes):
        texts.append(prompt(processor, question, kinds))
        for kind, (width, height, seed) in zip(kinds, kind_sizes):
            if kind == "image":
                images.append(image(width, height, seed=seed))
            else:
                videos.append(video(frames, size=56, seed=seed))
    processor.tokenizer.padding_side = padding_side
    try:
        return processor(text=texts, images=images or None, videos=videos or None, padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = "left"


def make_compressor(model, processor, scorer, keep_ratio):
    options = {"learned": {"predictor": small_predictor(model)}, "fastv": {"layer": 1}, "gae": {"max_new_tokens": 2}}
    return Compressor(model, processor, scorer=scorer, keep_ratio=keep_ratio, **options.get(scorer, {}))


def assert_budgets(compressor, batch):
    """Every image or video keeps max(1, round(keep * n)) of its n scored tokens, its structural
    tokens, and every real text token."""
    encoded = compressor.encode(**batch)
    prepared = compressor.prepare_encoded(encoded)
    for b, spans in enumerate(encoded.spans):
        kept = prepared.kept[b]
        for span in spans:
            assert int(torch.isin(span.positions, kept).sum()) == token_budget(compressor.keep_ratio, span.num_tokens)
            assert bool(torch.isin(span.structural, kept).all())
        text = encoded.attention_mask[b].bool().cpu() & ~encoded.visual_mask(b)
        assert bool(torch.isin(text.nonzero().flatten(), kept).all())


ANY_BATCH = {
    "case": batches(),
    "padding_side": st.sampled_from(["left", "right"]),
    "scorer": st.sampled_from([*DETERMINISTIC, "random"]),
    "keep_ratio": st.one_of(st.sampled_from([1.0, 0.5, 0.25, 1e-6]), st.floats(0.01, 1.0)),
}


@HYPOTHESIS
@given(**ANY_BATCH)
def test_any_batch_matches_each_sample_alone_and_the_unpruned_model(tiny_dirs, case, padding_side, scorer, keep_ratio):
    check_any_batch(tiny_dirs, case, padding_side, scorer, keep_ratio)


@pytest.mark.slow
@settings(HYPOTHESIS, max_examples=300, derandomize=False)
@given(**ANY_BATCH)
def test_any_batch_matches_each_sample_alone_searched_longer(tiny_dirs, case, padding_side, scorer, keep_ratio):
    check_any_batch(tiny_dirs, case, padding_side, scorer, keep_ratio)


def check_any_batch(tiny_dirs, case, padding_side, scorer, keep_ratio):
    family, prompts, sizes, frames = case
    model, processor = load_tiny(tiny_dirs, family)
    batch = processed(processor, prompts, sizes, frames, padding_side)
    singles = [processed(processor, [p], [s], frames) for p, s in zip(prompts, sizes)]
    compressor = make_compressor(model, processor, scorer, keep_ratio)
    has_video = any("video" in kinds for kinds, _ in prompts)
    if scorer == "learned" and has_video and keep_ratio < 1.0:  # an image predictor refuses videos
        with pytest.raises(PredictorMismatchError, match="given image predictors but the input has video"):
            compressor.prepare(**batch)
        return
    if compressor.input_stage:
        assert_budgets(compressor, batch)
    if scorer in DETERMINISTIC:
        assert_same_as_alone(compressor, batch, singles, n_new=2, tolerance=1e-3 if scorer == "gae" else 1e-4)
    else:
        assert greedy(compressor, batch, 2).shape[0] == len(prompts)
    if keep_ratio == 1.0:
        left = processed(processor, prompts, sizes, frames)
        assert torch.equal(new_tokens(greedy(compressor, batch, 2), batch), new_tokens(greedy(model, left, 2), left))


@HYPOTHESIS
@given(family=st.sampled_from(["qwen2-vl", "qwen2.5-vl"]), short=st.integers(1, 3), ratio=st.floats(200.5, 1000), tall=st.booleans())
def test_an_image_beyond_the_qwen_aspect_ratio_limit_is_refused_by_name(tiny_dirs, family, short, ratio, tall):
    """Qwen2-VL's processor refuses aspect ratios above 200; through our loaders that is one line
    naming the sample (the processor itself, called by the user, raises before our code runs)."""
    from explainprune.data import make_inputs
    from explainprune.data.sample import Sample

    _, processor = load_tiny(tiny_dirs, family)
    samples = [Sample(f"s{i}", image(56, 56, seed=i), "what?", "red") for i in range(3)]
    long = int(short * ratio) + 1
    samples[1].image = image(short, long) if tall else image(long, short)
    with pytest.raises(ExplainPruneError, match=r"refused sample 's1' \(\d+x\d+ image\): absolute aspect ratio must be smaller than 200"):
        make_inputs(processor, samples)


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_an_image_and_a_video_prompt_in_one_batch_with_fastv_match_each_alone(tiny_dirs, family):
    """The in-LLM pruner on a mixed-modality batch (the property above draws it too; kept as a named case)."""
    model, processor = load_tiny(tiny_dirs, family)
    prompts = [(("image",), "what colour is the circle?"), (("video",), "how many?"), ((), "what?")]
    sizes = [[(84, 56, 0)], [(56, 56, 1)], []]
    batch = processed(processor, prompts, sizes, 4)
    singles = [processed(processor, [p], [s], 4) for p, s in zip(prompts, sizes)]
    assert_same_as_alone(make_compressor(model, processor, "fastv", 0.5), batch, singles)
