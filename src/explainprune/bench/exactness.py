"""Exactness at keep 1.0 on tiny models of every family: `python -m explainprune.bench.exactness`.

Prints, per family and modality, the largest logit difference between the model on its processor
inputs and on `Compressor(keep_ratio=1.0).prepare(...)`, and whether greedy generations are identical.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..compressor import Compressor
from ..tiny import FAMILIES, build_tiny


def _prompt(processor, kind: str) -> str:
    content = [{"type": kind}, {"type": "text", "text": "what colour is the circle?"}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)


def _cases(family: str, processor, rng: np.random.RandomState) -> dict:
    images = [Image.fromarray(rng.randint(0, 255, shape, dtype=np.uint8)) for shape in ((100, 150, 3), (120, 90, 3))]
    cases = {"image": processor(text=[_prompt(processor, "image")] * 2, images=images, padding=True, return_tensors="pt")}
    if family != "llava":
        frames = rng.randint(0, 255, (4, 56, 56, 3), dtype=np.uint8)
        cases["video"] = processor(text=[_prompt(processor, "video")], videos=[frames], return_tensors="pt")
    return cases


@torch.no_grad()
def main() -> None:
    rng = np.random.RandomState(0)
    print(f"{'family':<16} {'input':<6} {'batch':>5} {'max |logit diff|':>17} {'greedy identical':>17}")
    for family in FAMILIES:
        model, processor = build_tiny(family)
        for kind, inputs in _cases(family, processor, rng).items():
            compressor = Compressor(model, processor, keep_ratio=1.0)
            real = inputs["attention_mask"].bool()
            difference = (model(**inputs).logits - model(**compressor.prepare(**inputs)).logits)[real].abs().max()
            same = torch.equal(
                model.generate(**inputs, max_new_tokens=8, do_sample=False),
                compressor.generate(**inputs, max_new_tokens=8, do_sample=False),
            )
            print(f"{family:<16} {kind:<6} {real.shape[0]:>5} {difference.item():>17.1e} {str(same):>17}")


if __name__ == "__main__":
    main()
