"""References the adversarial tests check against: the unpruned model and each sample alone."""

from __future__ import annotations

import torch

from explainprune import Compressor
from explainprune.predictor import Predictor


def small_predictor(model, modality: str = "image", arch: str = "grid", seed: int = 0) -> Predictor:
    """An untrained predictor that fits `model` (its fingerprint and head count)."""
    adapter = Compressor(model).adapter
    torch.manual_seed(seed)
    config = {
        "arch": arch,
        "n_heads": model.config.get_text_config().num_attention_heads,
        "fingerprint": adapter.fingerprint,
        "modality": modality,
        "channels": [4, 4],
    }
    return Predictor(config).eval()


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def new_tokens(output: torch.Tensor, inputs) -> torch.Tensor:
    """The generated part of `Compressor.generate`'s / `model.generate`'s output for `input_ids` inputs."""
    return output[:, inputs["input_ids"].shape[1] :]


def greedy(generator, inputs, n: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return generator.generate(**inputs, max_new_tokens=n, do_sample=False)


def assert_near_tie(compressor: Compressor, single, kept: torch.Tensor, tolerance: float) -> None:
    """`kept` (a sample's kept positions in a batch) differs from what it keeps alone only by tokens whose
    scores alone tie within `tolerance` (relative to the span's largest score): equal up to float noise."""
    assert compressor.input_stage and compressor.scorer.ranks_by_scores, "a choice that is not a near tie"
    encoded = compressor.encode(**single)
    scores = compressor.score(encoded)[0]
    visual = encoded.visual_mask(0)
    assert torch.equal(kept[~visual[kept]], compressor.select(encoded)[0][~visual[compressor.select(encoded)[0]]])
    for span, span_scores in zip(encoded.spans[0], scores):
        chosen = torch.isin(span.positions, kept)
        if chosen.all():
            continue
        span_scores = span_scores.float().cpu()
        slack = tolerance * float(span_scores.abs().max())
        assert float(span_scores[chosen].min()) >= float(span_scores[~chosen].max()) - slack, "not a top-k choice"


def assert_same_as_alone(compressor: Compressor, batch, singles, n_new: int = 3, tolerance: float = 1e-4) -> None:
    """Each sample of the batch gets what it gets alone: the same kept positions (counted from its
    first real token; near ties of the scores aside), embeddings, positions, last-token logits and
    greedy tokens."""
    model = compressor.model
    tied = set()
    if compressor.input_stage:
        prepared = compressor.prepare(**batch)
        batch_logits = logits(model, prepared)
        first_real = batch["attention_mask"].long().argmax(-1)
        for b, single in enumerate(singles):
            alone = compressor.prepare(**single)
            kept = prepared.kept[b] - first_real[b]
            if not torch.equal(kept, alone.kept[0]):
                assert_near_tie(compressor, single, kept, tolerance)
                tied.add(b)
                continue
            real = prepared["attention_mask"][b].bool()
            assert torch.allclose(prepared["inputs_embeds"][b][real], alone["inputs_embeds"][0], atol=1e-5)
            assert torch.equal(prepared["position_ids"][..., b, :][..., real], alone["position_ids"][..., 0, :])
            assert torch.allclose(batch_logits[b, -1], logits(model, alone)[0, -1], atol=1e-4)
    output = new_tokens(greedy(compressor, batch, n_new), batch)
    for b, single in enumerate(singles):
        if b in tied:
            continue
        alone = new_tokens(greedy(compressor, single, n_new), single)[0]
        assert torch.equal(output[b, : alone.numel()], alone), f"sample {b}: other tokens generated"
