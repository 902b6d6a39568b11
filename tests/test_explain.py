"""Explanation maps: GAE row propagation vs. the full-matrix reference, teacher forcing, rollout,
gradient x input and the target preprocessing."""

import pytest
import torch
from conftest import image, image_inputs, load_tiny
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from explainprune.adapters import get_adapter
from explainprune.explain import EXPLAINERS, gae, gae_full_matrix, generate_answers, preprocess_target, rollout
from explainprune.explain.answers import answer_tokens
from explainprune.explain.forward import explained_forward, explaining, teacher_forced_batch

FAMILIES_1D_AND_MROPE = ("qwen2-vl", "llava")


def encode(model, processor, questions=("what colour is the circle?", "how many")):
    """A left-padded batch of prompts with images of different sizes (the last ones if fewer)."""
    images = [image(56, 56), image(84, 56, seed=1)][-len(questions) :]
    with torch.no_grad():
        return get_adapter(model).encode(dict(image_inputs(processor, images, list(questions))))


def two_answers(model, encoded):
    """The model's own answers, the second cut to one token: answers of different lengths."""
    answers = generate_answers(model, encoded, 3)
    return [answers[0], answers[1][:1]]


@pytest.mark.parametrize("family", FAMILIES_1D_AND_MROPE)
def test_gae_rows_equal_full_matrix_reference(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    adapter = get_adapter(model)
    encoded = encode(model, processor)
    answers = two_answers(model, encoded)
    assert answers[0].numel() == 3
    rows = gae(adapter, encoded, answers)
    full = gae_full_matrix(adapter, encoded, answers)
    for sample_rows, sample_full, spans in zip(rows, full, encoded.spans):
        assert len(sample_rows) == len(spans) == 1
        for r, f, span in zip(sample_rows, sample_full, spans):
            assert r.shape == (span.num_tokens,)
            assert r.sum() > 0 and (r >= 0).all()
            torch.testing.assert_close(r, f, rtol=1e-4, atol=1e-6 * float(f.abs().max()))
    alone = gae(adapter, encode(model, processor, questions=("how many",)), answers[1:])
    torch.testing.assert_close(alone[0][0], rows[1][0], rtol=1e-4, atol=1e-6 * float(rows[1][0].max()))


@pytest.mark.parametrize("family", FAMILIES_1D_AND_MROPE)
def test_teacher_forced_logits_equal_the_generated_steps(tiny_dirs, family):
    """Answer positions (M-RoPE max + 1, 1-D last + 1) and query rows reproduce generation exactly."""
    model, processor = load_tiny(tiny_dirs, family)
    encoded = encode(model, processor)
    generated = model.generate(
        inputs_embeds=encoded.inputs_embeds, attention_mask=encoded.attention_mask, position_ids=encoded.position_ids,
        max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    answers = [generated.sequences[0], generated.sequences[1, :2]]
    batch = teacher_forced_batch(get_adapter(model), encoded, answers)
    with explaining(model, eager=True):
        forward = explained_forward(model, batch, attentions=True, gradients=False)
    for b, answer in enumerate(answers):
        for t, token in enumerate(answer):
            expected = generated.logits[t][b, token]
            torch.testing.assert_close(forward.answer_logits[b, t], expected, rtol=1e-4, atol=1e-4)
    assert not batch.answer_mask[1, 2]


def test_explaining_restores_the_model(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    encoded = encode(model, processor)
    before = model.config.get_text_config()._attn_implementation
    assert before != "eager"
    gae(get_adapter(model), encoded, two_answers(model, encoded))
    assert model.config.get_text_config()._attn_implementation == before
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_rollout_equals_the_product_of_mixed_attention_maps(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    adapter = get_adapter(model)
    encoded = encode(model, processor)
    answers = two_answers(model, encoded)
    relevance = rollout(adapter, encoded, answers)
    batch = teacher_forced_batch(adapter, encoded, answers)
    with explaining(model, eager=True):
        attentions = explained_forward(model, batch, attentions=True, gradients=False).attentions
    length = batch.inputs_embeds.shape[1]
    for b, spans in enumerate(encoded.spans):
        product = torch.eye(length)
        for attention in attentions:
            product = (0.5 * attention[b].mean(0) + 0.5 * torch.eye(length)) @ product
        n_answer = answers[b].numel()
        expected = product[batch.query_rows[b, :n_answer]].mean(0)
        torch.testing.assert_close(relevance[b][0], expected[spans[0].positions], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_every_explainer_gives_one_nonnegative_value_per_scored_token(tiny_dirs, name):
    model, processor = load_tiny(tiny_dirs, "llava-onevision")
    encoded = encode(model, processor)
    relevance = EXPLAINERS.get(name)(get_adapter(model), encoded, two_answers(model, encoded))
    for sample, spans in zip(relevance, encoded.spans):
        assert [v.shape for v in sample] == [(span.num_tokens,) for span in spans]
        assert all(torch.isfinite(v).all() and (v >= 0).all() and v.sum() > 0 for v in sample)


def test_answers_end_before_the_first_stop_token_but_keep_at_least_one():
    stop = torch.tensor([2, 0])
    assert answer_tokens(torch.tensor([5, 6, 2, 7]), stop).tolist() == [5, 6]
    assert answer_tokens(torch.tensor([5, 6, 7]), stop).tolist() == [5, 6, 7]
    assert answer_tokens(torch.tensor([2, 0, 0]), stop).tolist() == [2]


def test_teacher_forcing_refuses_an_empty_answer(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    encoded = encode(model, processor)
    with pytest.raises(ValueError, match="at least one token"):
        gae(get_adapter(model), encoded, [torch.tensor([5]), torch.tensor([], dtype=torch.long)])


relevance_maps = st.lists(st.floats(0, 1e3, allow_nan=False, allow_subnormal=False), min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(relevance_maps)
def test_target_sums_to_one_zeroes_the_bottom_half_and_keeps_the_order(values):
    x = torch.tensor(values)
    assume(torch.sort(x, descending=True).values[: len(values) - len(values) // 2].sum() > 0)
    y = preprocess_target(x)
    assert y.shape == x.shape
    assert abs(float(y.sum()) - 1) < 1e-5
    assert int((y == 0).sum()) >= len(values) // 2
    assert int((y > 0).sum()) <= len(values) - len(values) // 2
    larger = x[:, None] > x[None, :]
    assert (y[:, None] >= y[None, :])[larger].all()
    kept = y > 0
    torch.testing.assert_close(y[kept], x[kept] / x[kept].sum())


@pytest.mark.parametrize("values", [[], [1.0, -0.5], [0.0, 0.0, 0.0], [1.0, float("nan")]])
def test_target_refuses_unusable_maps(values):
    with pytest.raises(ValueError):
        preprocess_target(torch.tensor(values))
