"""Explanation maps: relevance of each visual token for the model's own (teacher-forced) answer.

Every explainer is called as `explainer(adapter, encoded, answers)` with the prompt's
`EncodedBatch` (from `Compressor.encode`) and one 1-D tensor of answer token ids per sample,
and returns per sample, per visual span, one relevance value per scored token.
"""

from .answers import generate_answers
from .gae import gae, gae_full_matrix
from .gradxinput import gradxinput
from .rollout import rollout
from .target import preprocess_target

EXPLAINERS = {"gae": gae, "rollout": rollout, "gradxinput": gradxinput}

__all__ = ["EXPLAINERS", "gae", "gae_full_matrix", "generate_answers", "gradxinput", "preprocess_target", "rollout"]
