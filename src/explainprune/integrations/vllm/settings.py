"""Which scorer and keep ratio a vLLM deployment prunes with, read from its HF config.

The settings ride in the model's HF config through vLLM's `hf_overrides`, next to the architecture
that selects our model class, so `vllm.LLM(...)` and `vllm serve` are configured the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...embedded import PREDICTOR_DIR
from ...errors import ExplainPruneError
from ...prune import check_keep_ratio

# model_type of the HF config -> (our architecture, the stock vLLM architecture it extends)
ARCHITECTURES = {
    "qwen2_vl": "ExplainPruneQwen2VLForConditionalGeneration",
    "qwen2_5_vl": "ExplainPruneQwen2_5_VLForConditionalGeneration",
}
# The scorers whose needs vLLM's model classes meet and that are tested there against Compressor;
# `gae` needs gradients through the HF model and in-LLM pruners run inside the LLM's layers.
SUPPORTED_SCORERS = ("uniform", "layer0", "learned")
KEYS = ("explainprune_scorer", "explainprune_keep_ratio", "explainprune_predictor")


@dataclass(frozen=True)
class PruneSettings:
    """One deployment's pruning: a registered scorer, its keep ratio and (learned) its predictor directory."""

    scorer: str = "learned"
    keep_ratio: float = 0.5
    predictor: str | None = None

    def __post_init__(self):
        if self.scorer not in SUPPORTED_SCORERS:
            raise ExplainPruneError(
                f"explainprune_scorer {self.scorer!r} is not available in vLLM; use one of: {', '.join(SUPPORTED_SCORERS)}"
            )
        object.__setattr__(self, "keep_ratio", check_keep_ratio(self.keep_ratio))
        if self.predictor is not None:
            if self.scorer != "learned":
                raise ExplainPruneError(f"explainprune_predictor is given but scorer {self.scorer!r} takes no predictor")
            if not (Path(self.predictor) / "config.json").is_file():
                raise ExplainPruneError(
                    f"explainprune_predictor {self.predictor!r} is not a predictor directory (no config.json there)"
                )

    @classmethod
    def from_config(cls, config) -> PruneSettings:
        """The settings an HF config carries (`explainprune_*` attributes), defaults for the missing ones."""
        values = {key.removeprefix("explainprune_"): getattr(config, key) for key in KEYS if hasattr(config, key)}
        return cls(**values)

    def modalities(self) -> tuple[str, ...]:
        """What the scorer can prune: a learned predictor serves the one modality it was trained on."""
        if self.scorer != "learned":
            return ("image", "video")
        directory = Path(self.predictor) if self.predictor is not None else PREDICTOR_DIR
        return (json.loads((directory / "config.json").read_text())["modality"],)

    def scorer_options(self) -> dict:
        """Keyword options for `make_scorer`."""
        return {"predictor": self.predictor} if self.predictor is not None else {}

    def describe(self) -> str:
        """A stable text of the settings: it enters every multimodal hash of the deployment."""
        return f"{self.scorer}:{self.keep_ratio!r}:{self.predictor or ''}"


def hf_overrides(model_type: str, scorer: str = "learned", keep_ratio: float = 0.5, predictor: str | None = None) -> dict:
    """The `hf_overrides` that serve a `model_type` ('qwen2_vl', 'qwen2_5_vl') model with pruning.

    >>> LLM(model=DIR, hf_overrides=hf_overrides("qwen2_vl", "layer0", 0.25))
    """
    if model_type not in ARCHITECTURES:
        raise ExplainPruneError(f"model type {model_type!r} cannot be pruned in vLLM; supported: {', '.join(ARCHITECTURES)}")
    settings = PruneSettings(scorer, keep_ratio, None if predictor is None else str(predictor))
    overrides = {"architectures": [ARCHITECTURES[model_type]], "explainprune_scorer": settings.scorer,
                 "explainprune_keep_ratio": settings.keep_ratio}  # fmt: skip
    if settings.predictor is not None:
        overrides["explainprune_predictor"] = settings.predictor
    return overrides
