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


def assert_same_as_alone(compressor: Compressor, batch, singles, n_new: int = 3) -> None:
    """Each sample of the batch gets what it gets alone: the same kept positions (counted from its
    first real token), embeddings, positions, last-token logits and greedy tokens."""
    model = compressor.model
    if compressor.input_stage:
        prepared = compressor.prepare(**batch)
        batch_logits = logits(model, prepared)
        first_real = batch["attention_mask"].long().argmax(-1)
        for b, single in enumerate(singles):
            alone = compressor.prepare(**single)
            assert torch.equal(prepared.kept[b] - first_real[b], alone.kept[0]), f"sample {b}: other tokens kept"
            real = prepared["attention_mask"][b].bool()
            assert torch.allclose(prepared["inputs_embeds"][b][real], alone["inputs_embeds"][0], atol=1e-5)
            assert torch.equal(prepared["position_ids"][..., b, :][..., real], alone["position_ids"][..., 0, :])
            assert torch.allclose(batch_logits[b, -1], logits(model, alone)[0, -1], atol=1e-4)
    output = new_tokens(greedy(compressor, batch, n_new), batch)
    for b, single in enumerate(singles):
        alone = new_tokens(greedy(compressor, single, n_new), single)[0]
        assert torch.equal(output[b, : alone.numel()], alone), f"sample {b}: other tokens generated"
