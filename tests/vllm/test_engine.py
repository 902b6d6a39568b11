"""The CPU engine prunes exactly as `Compressor`: same kept tokens, same answers, under the engine's
own features (a concurrent batch of different images, questions and sizes; prefill in 32-token
chunks that split images; prefix caching on)."""

from __future__ import annotations

import pytest
from conftest import BLOCK_SIZE, CHUNK, compressor_reference, engine, generate, selection_key, selections, until_end

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
            check_video(llm, reference, scenes, scorer, keep_ratio)


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


@pytest.mark.parametrize("scorer", ["uniform", "layer0"])
def test_qwen2_5_vl_prunes_as_compressor(small_qwen2_5_vl, scenes, scorer):
    from explainprune.integrations.vllm import hf_overrides

    directory, model, processor = small_qwen2_5_vl
    overrides = {"model": str(directory), "hf_overrides": hf_overrides("qwen2_5_vl", scorer, 0.5)}
    with engine(scorer, 0.5, **overrides) as llm:
        check_against_compressor(llm, (model, processor), scenes, scorer, 0.5)


def check_video(llm, reference, scenes, scorer, keep_ratio):
    """A video (the scenes as frames) is one span over its (t, h, w) grid, as in Compressor."""
    import numpy as np
    import torch
    from vllm import SamplingParams

    from explainprune import Compressor

    model, processor = reference
    frames = np.stack([np.asarray(s.image.resize((112, 112))) for s in scenes[:4]])
    content = [{"type": "video"}, {"type": "text", "text": "what colour is the circle?"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    compressor = Compressor(model, processor, scorer=scorer, keep_ratio=keep_ratio)
    encoded = compressor.encode(**processor(text=[text], videos=[frames], return_tensors="pt"))
    prepared = compressor.prepare_encoded(encoded)
    with torch.no_grad():
        expected = model.generate(**prepared, max_new_tokens=4, do_sample=False)[0].tolist()
    (span,) = encoded.spans[0]
    assert span.grids[0][0] > 1, "the video should have several temporal patches"
    output = llm.generate({"prompt": text, "multi_modal_data": {"video": frames}}, SamplingParams(max_tokens=4, temperature=0.0),
                          use_tqdm=False)[0]  # fmt: skip
    recorded = selections(llm)
    video_token = model.config.video_token_id
    kept = torch.isin(span.positions, prepared.kept[0]).nonzero().flatten().tolist()
    assert recorded.get(selection_key(output.prompt_token_ids, video_token)) == kept
    assert list(output.outputs[0].token_ids) == until_end(model, expected)
