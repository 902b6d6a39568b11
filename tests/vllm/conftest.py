"""vLLM engines on the embedded model against `Compressor` on the same held-out scenes.

Runs in the vLLM venv only (`make test-vllm`). Telemetry and the hub are off in every process.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import torch

TELEMETRY_OFF = {
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
os.environ.update(TELEMETRY_OFF)
# Engines run inside the test process, so `LLM.apply_model` can read the model's recorded choices.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

from explainprune import Compressor  # noqa: E402
from explainprune.data.prompting import make_inputs, prompt_texts  # noqa: E402
from explainprune.data.specs import load_samples  # noqa: E402
from explainprune.embedded import EMBEDDED_DIR, load_embedded  # noqa: E402

MAX_TOKENS = 12
BLOCK_SIZE = 32  # the CPU backend's smallest; prompts here span a few blocks, so prefix caching engages
CHUNK = 32  # tokens per engine step: images of more placeholders are split across prefill chunks
# Held-out scenes of three sizes (16, 64 and 144 visual tokens), questions of every type.
SCENES = "synthetic:split=test,seed=5,n=6,size=112|224|336"


@pytest.fixture(scope="session")
def reference():
    """(model, processor): the embedded model in float32 through transformers."""
    return load_embedded(torch.float32)


@pytest.fixture(scope="session")
def scenes():
    return load_samples(SCENES)


def engine_options(scorer: str, keep_ratio: float, **overrides) -> dict:
    from explainprune.integrations.vllm import hf_overrides

    options = dict(
        model=str(EMBEDDED_DIR),
        hf_overrides=hf_overrides("qwen2_vl", scorer, keep_ratio),
        dtype="float32",
        max_model_len=1024,
        max_num_seqs=8,
        max_num_batched_tokens=CHUNK,
        enable_chunked_prefill=True,
        enable_prefix_caching=True,
        block_size=BLOCK_SIZE,
        kv_cache_memory_bytes=256 * 2**20,
        enforce_eager=True,
        seed=0,
    )
    return {**options, **overrides}


@contextmanager
def engine(scorer: str, keep_ratio: float, **overrides):
    """A `vllm.LLM` serving the embedded model with explainprune, shut down afterwards."""
    from vllm import LLM

    llm = LLM(**engine_options(scorer, keep_ratio, **overrides))
    try:
        yield llm
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()


def generate(llm, processor, samples):
    """vLLM's outputs for the samples, submitted together (one concurrent batch)."""
    from vllm import SamplingParams

    requests = [{"prompt": text, "multi_modal_data": {"image": s.image}} for text, s in zip(prompt_texts(processor, samples), samples)]
    return llm.generate(requests, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0), use_tqdm=False)


def selections(llm) -> dict:
    """Kept raster indices per prompt (token ids with one placeholder), as recorded by the model."""
    recorded = llm.apply_model(lambda model: model.explainprune_selections())[0]
    return {prompt: kept for prompt, _, _, kept in recorded}


def selection_key(prompt_token_ids, image_token_id: int) -> tuple[int, ...]:
    """vLLM's prompt ids with the image's run of placeholders collapsed to one (the recorded key)."""
    ids = list(prompt_token_ids)
    first = ids.index(image_token_id)
    last = len(ids) - 1 - ids[::-1].index(image_token_id)
    return tuple(ids[: first + 1] + ids[last + 1 :])


@dataclass(frozen=True)
class Reference:
    """What `Compressor` does with one sample: new token ids up to and with the first end-of-turn,
    the kept raster indices of its image, and the length of the pruned prompt."""

    tokens: list[int]
    kept: list[int]
    prompt_length: int


def compressor_reference(reference, scorer: str, keep_ratio: float, sample, question: str | None = None) -> Reference:
    model, processor = reference
    if question is not None:
        sample = replace(sample, question=question)
    compressor = Compressor(model, processor, scorer=scorer, keep_ratio=keep_ratio)
    encoded = compressor.encode(**make_inputs(processor, [sample]))
    prepared = compressor.prepare_encoded(encoded)
    with torch.no_grad():
        new = model.generate(**prepared, max_new_tokens=MAX_TOKENS, do_sample=False)[0].tolist()
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    end = next((i + 1 for i, token in enumerate(new) if token in eos), len(new))
    kept = torch.isin(encoded.spans[0][0].positions, prepared.kept[0]).nonzero().flatten().tolist()
    return Reference(new[:end], kept, int(prepared.attention_mask.sum()))
