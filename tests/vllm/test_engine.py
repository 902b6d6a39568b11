"""The CPU engine prunes exactly as `Compressor`: same kept tokens, same answers, under the engine's
own features (a concurrent batch of different images, questions and sizes; prefill in 32-token
chunks that split images; prefix caching on)."""

from __future__ import annotations

import pytest
from conftest import BLOCK_SIZE, CHUNK, compressor_reference, engine, generate, selection_key, selections

SCORERS = ("uniform", "layer0", "learned")


def check_against_compressor(llm, reference, scenes, scorer, keep_ratio):
    model, processor = reference
    image_token = model.config.image_token_id
    outputs = generate(llm, processor, scenes)
    recorded = selections(llm)
    split = 0
    for sample, output in zip(scenes, outputs):
        expected = compressor_reference(reference, scorer, keep_ratio, sample)
        key = selection_key(output.prompt_token_ids, image_token)
        assert recorded.get(key) == expected.kept, f"{sample.id}: kept tokens differ from Compressor's"
        assert list(output.outputs[0].token_ids) == expected.tokens, f"{sample.id}: answer differs from Compressor's"
        assert len(output.prompt_token_ids) == expected.prompt_length
        placeholders = [i for i, t in enumerate(output.prompt_token_ids) if t == image_token]
        split += placeholders[0] // CHUNK != placeholders[-1] // CHUNK
    assert split, "no image crossed a prefill chunk boundary: the chunking case was not exercised"


def test_keep_one_is_the_unpruned_model(reference, scenes):
    # At keep 1.0 `selection.choose` keeps everything without consulting the scorer: one engine covers all.
    with engine("uniform", 1.0) as llm:
        check_against_compressor(llm, reference, scenes, "uniform", 1.0)
        check_refusals(llm, scenes[0].image)


def check_refusals(llm, image):
    """Prompts whose choice cannot equal Compressor's are refused with one clear line, and the
    engine keeps serving."""
    with pytest.raises(ValueError, match="put the question after it"):
        llm.generate({"prompt": "<|vision_start|><|image_pad|>", "multi_modal_data": {"image": image}}, use_tqdm=False)
    from vllm.exceptions import VLLMValidationError

    two = "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>which?"
    with pytest.raises(VLLMValidationError, match="At most 1 image"):
        llm.generate({"prompt": two, "multi_modal_data": {"image": [image, image]}}, use_tqdm=False)
    assert llm.generate({"prompt": "<|vision_start|><|image_pad|><|vision_end|>?", "multi_modal_data": {"image": image}},
                        use_tqdm=False)[0].outputs[0].token_ids  # fmt: skip


def test_scorers_vllm_cannot_run_are_refused_at_start():
    with pytest.raises(ValueError, match="'gae' is not available in vLLM"):
        with engine("uniform", 0.5, hf_overrides={"architectures": ["ExplainPruneQwen2VLForConditionalGeneration"],
                                                  "explainprune_scorer": "gae"}):  # fmt: skip
            pass


@pytest.mark.parametrize("keep_ratio", [0.5, 0.25])
@pytest.mark.parametrize("scorer", SCORERS)
def test_kept_tokens_and_answers_equal_compressor(reference, scenes, scorer, keep_ratio):
    with engine(scorer, keep_ratio) as llm:
        check_against_compressor(llm, reference, scenes, scorer, keep_ratio)
        if (scorer, keep_ratio) == ("layer0", 0.25):
            check_prefix_cache_with_two_questions(llm, reference, scenes)


def check_prefix_cache_with_two_questions(llm, reference, scenes):
    """Two questions on one image, prefix caching on: the second question gets its own kept tokens
    (and answer) although its prompt matches the first one token for token up to the question."""
    model, processor = reference
    image_token = model.config.image_token_id
    sample = max(scenes, key=lambda s: s.image.size[0])  # the 336 px scene: its placeholders fill whole blocks
    first, second = "what colour is the circle?", "how many objects are there?"
    expected = {q: compressor_reference(reference, "layer0", 0.25, sample, q) for q in (first, second)}
    assert expected[first].kept != expected[second].kept, "pick questions whose kept tokens differ"
    runs = [(question, generate(llm, processor, [_with_question(sample, question)])[0]) for question in (first, second, first)]
    recorded = selections(llm)
    for question, output in runs:
        assert recorded.get(selection_key(output.prompt_token_ids, image_token)) == expected[question].kept
        assert list(output.outputs[0].token_ids) == expected[question].tokens
    assert runs[2][1].num_cached_tokens >= BLOCK_SIZE, "the repeated request should reuse the cached image blocks"
    first_image_block = runs[1][1].prompt_token_ids.index(image_token) // BLOCK_SIZE * BLOCK_SIZE
    assert runs[1][1].num_cached_tokens <= first_image_block, "the second question reused the first one's image blocks"


def _with_question(sample, question):
    from dataclasses import replace

    return replace(sample, question=question)
