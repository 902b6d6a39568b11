"""Hand-computed layer-0 attention equals eager `output_attentions` on every family."""

from __future__ import annotations

import torch
from conftest import image, image_inputs, load_tiny

from explainprune import Compressor
from explainprune.attention import attention_rows, instruction_attention_rows
from explainprune.scoring import make_scorer
from explainprune.scoring.learned import row_mean_and_peak, span_features


def test_layer0_attention_equals_eager_output_attentions(tiny_dirs, family):
    sdpa_model, processor = load_tiny(tiny_dirs, family)
    eager_model, _ = load_tiny(tiny_dirs, family, attn_implementation="eager")
    inputs = image_inputs(processor, [image(150, 100, 1), image(90, 120, 2)], ["what colour?", "is there a red square?"])
    compressor = Compressor(sdpa_model, processor)
    assert sdpa_model.config._attn_implementation == "sdpa"  # the model itself keeps sdpa
    encoded = compressor.encode(**inputs)
    prepared = compressor.__class__(sdpa_model, processor, keep_ratio=1.0).prepare(**inputs)
    with torch.no_grad():
        eager = eager_model(**prepared, output_attentions=True).attentions[0]  # (B, heads, L, L)
    rows = [encoded.instruction_rows(b) for b in range(2)]
    ours = attention_rows(
        compressor.adapter, 0, encoded.inputs_embeds, encoded.position_ids, encoded.attention_mask, rows
    )
    for b in range(2):
        assert rows[b].numel() > 3
        real = encoded.attention_mask[b].bool()
        reference = eager[b][:, rows[b]][..., real]
        assert (ours[b][..., real] - reference).abs().max().item() <= 1e-6
        assert ours[b][..., ~real].abs().max().item() == 0.0 if (~real).any() else True
        averaged = instruction_attention_rows(compressor.adapter, encoded)[b].mean(dim=1)
        assert torch.allclose(averaged, reference.mean(1).new_zeros(averaged.shape).index_copy(
            1, real.nonzero().flatten(), reference.mean(1)), atol=1e-6)
        for span, features in zip(encoded.spans[b], span_features(compressor.adapter, encoded)[b]):
            on_span = eager[b][:, rows[b]][..., span.positions]  # (heads, rows, n_tokens)
            peaks = (on_span / on_span.sum(-1, keepdim=True)).amax(dim=1)
            torch.testing.assert_close(features, torch.cat([on_span.mean(1), peaks]).T, atol=1e-6, rtol=1e-5)
            for rows_option, reference_scores in (("mean", on_span.mean(1).mean(0)), ("peak", peaks.mean(0))):
                (scores,) = make_scorer("layer0", rows=rows_option).score(compressor.adapter, encoded)[b]
                torch.testing.assert_close(scores, reference_scores, atol=1e-6, rtol=1e-5)


def test_row_peak_marks_a_word_that_looks_at_one_token_when_the_mean_misses_it():
    """Hand-made rows: two rows spread over four tokens, one row gives token 3 all of its little image
    attention. The row-mean ranks token 3 last; the row-peak ranks it first."""
    attention = torch.tensor([[[0.30, 0.30, 0.20, 0.00], [0.20, 0.30, 0.30, 0.00], [0.00, 0.00, 0.00, 0.05]]])
    features = row_mean_and_peak(attention)
    assert features.shape == (4, 2)
    assert int(features[:, 0].argmin()) == 3 and int(features[:, 1].argmax()) == 3
    torch.testing.assert_close(features[3], torch.tensor([0.05 / 3, 1.0]))


def test_instruction_rows_follow_the_last_visual_token(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = image_inputs(processor, [image(112, 112)])
    encoded = Compressor(model, processor).encode(**inputs)
    rows = encoded.instruction_rows(0)
    last_visual = int(encoded.spans[0][-1].positions.max())
    assert rows.min() > last_visual and int(rows.max()) == inputs["input_ids"].shape[1] - 1
