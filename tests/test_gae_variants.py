"""GAE variants: the centred weighting is the gradient w.r.t. the pre-softmax scores; each variant on
hand-made cases where the right token is known; options reach the scorer and the answer tokens."""

import pytest
import torch
from conftest import image, image_inputs, load_tiny
from transformers import AttentionInterface

from explainprune import Compressor
from explainprune.adapters import get_adapter
from explainprune.errors import ExplainPruneError
from explainprune.explain import gae, gae_full_matrix, gae_variant, gae_variants, generate_answers
from explainprune.explain.answers import select_answer_tokens
from explainprune.explain.forward import explained_forward, explained_quantity, explaining, teacher_forced_batch
from explainprune.explain.gae import (
    CHOICES,
    PRESETS,
    GAEVariant,
    _propagate_rows,
    attention_weighting,
    gradient_weighted_attention,
)

RECORDED_SCORES: list[torch.Tensor] = []
SCORE_RECORDING = "explainprune-test-score-recording"


def score_recording_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention that also records its pre-softmax scores Z (same graph as the probabilities)."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    RECORDED_SCORES.append(scores)
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), probabilities


AttentionInterface.register(SCORE_RECORDING, score_recording_attention)


def encode(model, processor):
    images = [image(56, 56), image(84, 56, seed=1)]
    with torch.no_grad():
        return get_adapter(model).encode(dict(image_inputs(processor, images, ["what colour is it?", "how many"])))


@pytest.mark.parametrize("family", ["qwen2-vl", "llava"])
@pytest.mark.parametrize("quantity", CHOICES["quantity"])
def test_centred_weighting_is_the_gradient_wrt_the_pre_softmax_scores(tiny_dirs, family, quantity):
    model, processor = load_tiny(tiny_dirs, family)
    encoded = encode(model, processor)
    batch = teacher_forced_batch(get_adapter(model), encoded, generate_answers(model, encoded, 2))
    with explaining(model, eager=False):
        model.set_attn_implementation({"text_config": SCORE_RECORDING})
        try:
            RECORDED_SCORES.clear()
            forward = explained_forward(model, batch, attentions=True, gradients=True, quantity=quantity)
            scores = list(RECORDED_SCORES)
        finally:
            model.set_attn_implementation({"text_config": "sdpa"})
    assert len(scores) == len(forward.attentions) == model.config.get_text_config().num_hidden_layers
    target = forward.answer_scores[batch.answer_mask].sum()
    gradients = torch.autograd.grad(target, [*forward.attentions, *scores])
    wrt_probabilities, wrt_scores = gradients[: len(scores)], gradients[len(scores) :]
    for attention, gradient, expected in zip(forward.attentions, wrt_probabilities, wrt_scores):
        centred = attention_weighting(attention, gradient, "centred")
        torch.testing.assert_close(centred, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
        plain = attention_weighting(attention, gradient, "probs")
        assert not torch.allclose(plain, expected, rtol=1e-2, atol=1e-2 * float(expected.abs().max()))


# Hand-made single-layer cases: 6 visual tokens (0-5) and the answer's query row (6), two heads.
# Head 0 reads the object token O almost alone (saturated); head 1 spreads over every token. The
# logits of 4 classes are sum_h sum_j A_h[6, j] M_h[j, c] + bias; the answer is class 0.
O, BACKGROUND, BRIGHT, QUERY, ANSWER = 2, 4, 5, 6, 0


def hand_made_case(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention (1, 2, 7, 7) in the graph, logits (4,)) for per-head value read-outs M_h (7, 4)."""
    scores = torch.full((1, 2, 7, 7), -30.0)
    scores[0, :, torch.arange(6), torch.arange(6)] = 0.0  # visual rows attend to themselves
    scores[0, 0, QUERY, :] = 0.0
    scores[0, 0, QUERY, O] = 8.0  # head 0: ~0.997 of its attention on O
    scores[0, 1, QUERY, :] = 0.0
    scores[0, 1, QUERY, BACKGROUND] = 0.5  # head 1: diffuse, a little more on one background token
    attention = torch.softmax(scores.requires_grad_(), dim=-1)
    bias = torch.tensor([4.0, 0.0, 0.0, 0.0])
    logits = sum(attention[0, h, QUERY] @ values[h] for h in range(2)) + bias
    return attention, logits


def shared_component_case():
    """Every value of head 0 pushes the answer down (-5), O's value up by 2 on top of that; every
    value of head 1 pushes it up (+3) alike. Only O tells the answer apart."""
    reader, spread = torch.zeros(7, 4), torch.zeros(7, 4)
    reader[:, ANSWER] = -5.0
    reader[O, ANSWER] += 2.0
    spread[:, ANSWER] = 3.0
    return hand_made_case([reader, spread])


def bright_token_case():
    """O raises the answer (head 0); the bright token raises every class's logit alike (head 1)."""
    reader, spread = torch.zeros(7, 4), torch.zeros(7, 4)
    reader[O, ANSWER] = 2.0
    spread[BRIGHT, :] = 4.0
    return hand_made_case([reader, spread])


def top_visual_token(case, variant: GAEVariant) -> int:
    attention, logits = case()
    assert int(logits.argmax()) == ANSWER
    score = explained_quantity(logits[None, None], torch.tensor([[ANSWER]]), variant.quantity).sum()
    (gradient,) = torch.autograd.grad(score, attention)
    layer = gradient_weighted_attention(attention.detach(), gradient, variant)
    relevance = _propagate_rows([layer], torch.tensor([QUERY]))[0, :6]
    ranked = relevance.argsort(descending=True)
    assert relevance[ranked[0]] > relevance[ranked[1]], "no single most relevant token"
    return int(ranked[0])


ALL_VARIANTS = [
    GAEVariant(quantity=q, gradient=g, heads=h)
    for q in CHOICES["quantity"]
    for g in CHOICES["gradient"]
    for h in CHOICES["heads"]
]


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=GAEVariant.label)
def test_each_variant_on_a_shared_value_component(variant):
    """The row-constant part of dS/dA: zeroed O under `probs` (relu of a negative), removed by centring."""
    expected = O if variant.gradient == "centred" else BACKGROUND
    assert top_visual_token(shared_component_case, variant) == expected


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=GAEVariant.label)
def test_each_variant_on_a_token_that_raises_every_logit(variant):
    """The logit credits a token that favours no answer; the log-probability and margin do not."""
    expected = BRIGHT if (variant.quantity, variant.gradient) == ("logit", "centred") else O
    assert top_visual_token(bright_token_case, variant) == expected


def test_margin_is_to_the_best_other_token_and_logprob_is_log_softmax():
    logits = torch.tensor([[[1.0, 3.0, 2.5, -1.0]]])
    answers = torch.tensor([[1]])
    assert float(explained_quantity(logits, answers, "logit")) == 3.0
    assert float(explained_quantity(logits, answers, "margin")) == pytest.approx(0.5)
    log_probability = float(logits.log_softmax(-1)[0, 0, 1])
    assert float(explained_quantity(logits, answers, "logprob")) == pytest.approx(log_probability)


def test_answer_token_choices_on_a_hand_made_answer():
    stop = torch.tensor([2, 0])
    answers = [torch.tensor([5, 6, 2]), torch.tensor([2]), torch.tensor([7, 8])]
    as_lists = lambda which: [a.tolist() for a in select_answer_tokens(answers, which, stop)]  # noqa: E731
    assert as_lists("all") == [[5, 6, 2], [2], [7, 8]]
    assert as_lists("no-eos") == [[5, 6], [2], [7, 8]]
    assert as_lists("first") == [[5], [2], [7]]


@pytest.mark.parametrize("variant", [PRESETS["paper"], PRESETS["default"], gae_variant(heads="max", quantity="margin")])
def test_variants_rows_equal_full_matrix_reference(tiny_dirs, variant):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    adapter = get_adapter(model)
    encoded = encode(model, processor)
    answers = generate_answers(model, encoded, 3, keep_stop=True)
    for rows, full in zip(gae(adapter, encoded, answers, variant), gae_full_matrix(adapter, encoded, answers, variant)):
        assert rows[0].sum() > 0
        torch.testing.assert_close(rows[0], full[0], rtol=1e-4, atol=1e-6 * float(full[0].abs().max()))


def test_several_variants_at_once_equal_each_alone(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    adapter = get_adapter(model)
    encoded = encode(model, processor)
    answers = generate_answers(model, encoded, 3, keep_stop=True)
    variants = [PRESETS["paper"], PRESETS["default"], gae_variant(heads="max"), gae_variant(gradient="probs")]
    for variant, together in zip(variants, gae_variants(adapter, encoded, answers, variants)):
        for sample_together, sample_alone in zip(together, gae(adapter, encoded, answers, variant)):
            torch.testing.assert_close(sample_together[0], sample_alone[0])


def test_answer_tokens_explain_the_chosen_prefix(tiny_dirs):
    """`first` on a three-token answer is the same map as `all` on its first token alone."""
    model, processor = load_tiny(tiny_dirs, "llava")
    adapter = get_adapter(model)
    encoded = encode(model, processor)
    answers = [torch.tensor([11, 12, 13]), torch.tensor([14, 15])]
    first = gae(adapter, encoded, answers, gae_variant(answer_tokens="first"))
    alone = gae(adapter, encoded, [a[:1] for a in answers], gae_variant(answer_tokens="all"))
    every = gae(adapter, encoded, answers, gae_variant(answer_tokens="all"))
    for f, a, e in zip(first, alone, every):
        torch.testing.assert_close(f[0], a[0])
        assert not torch.allclose(f[0], e[0])


def test_generated_answers_keep_the_stop_token_when_asked(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    encoded = encode(model, processor)
    stop = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None  # no stop: both keep the whole generation
    try:
        free = generate_answers(model, encoded, 4)
    finally:
        model.generation_config.eos_token_id = stop
    forced = int(free[0][1])  # make the second generated token the stop token
    model.generation_config.eos_token_id = forced
    try:
        kept, dropped = generate_answers(model, encoded, 4, keep_stop=True), generate_answers(model, encoded, 4)
    finally:
        model.generation_config.eos_token_id = stop
    assert kept[0].tolist() == free[0][:2].tolist() and dropped[0].tolist() == free[0][:1].tolist()


def test_gae_scorer_takes_a_preset_and_single_options(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    scorer = Compressor(model, processor, scorer="gae", variant="paper", heads="max").scorer
    assert scorer.variant == GAEVariant(quantity="logit", gradient="probs", heads="max", answer_tokens="all")
    assert Compressor(model, processor, scorer="gae").scorer.variant == PRESETS["default"]
    encoded = encode(model, processor)
    scores = Compressor(model, processor, scorer="gae", quantity="margin").score(encoded)
    answers = generate_answers(model, encoded, 16, keep_stop=True)
    expected = gae(get_adapter(model), encoded, answers, gae_variant(quantity="margin"))
    for s, e in zip(scores, expected):
        torch.testing.assert_close(s[0], e[0])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"variant": "chefer"}, "unknown GAE variant 'chefer'"),
        ({"gradient": "abs"}, "gradient must be one of probs, centred"),
    ],
)
def test_bad_gae_options_are_named(tiny_dirs, options, message):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    with pytest.raises(ExplainPruneError, match=message):
        Compressor(model, processor, scorer="gae", **options)
