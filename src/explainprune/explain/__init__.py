"""Explanation maps: relevance of each visual token for the model's own (teacher-forced) answer.

Every explainer is called as `explainer(adapter, encoded, answers)` with the prompt's
`EncodedBatch` (from `Compressor.encode`) and one 1-D tensor of answer token ids per sample (as
`generate_answers(..., keep_stop=True)` gives them), and returns per sample, per visual span, one
relevance value per scored token. GAE takes a `GAEVariant` too (`gae_variant`, presets default and
paper).
"""

from .answers import ANSWER_TOKENS, generate_answers
from .gae import GAEVariant, gae, gae_full_matrix, gae_variant, gae_variants
from .gradxinput import gradxinput
from .rollout import rollout
from ..registry import Registry
from .target import dilate_target, preprocess_target

EXPLAINERS: Registry = Registry("explainer", entry_point_group="explainprune.explainers")
for _name, _explainer in (("gae", gae), ("rollout", rollout), ("gradxinput", gradxinput)):
    EXPLAINERS.add(_name, _explainer)

__all__ = [
    "ANSWER_TOKENS",
    "EXPLAINERS",
    "GAEVariant",
    "dilate_target",
    "gae",
    "gae_full_matrix",
    "gae_variant",
    "gae_variants",
    "generate_answers",
    "gradxinput",
    "preprocess_target",
    "rollout",
]
