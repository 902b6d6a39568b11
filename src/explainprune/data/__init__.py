"""Visual question data: synthetic scenes, easy-vqa and JSON-lines files, plus chat prompting."""

from explainprune.data.prompting import is_correct, make_inputs, normalize_answer
from explainprune.data.sample import Sample
from explainprune.data.specs import load_samples

__all__ = ["Sample", "load_samples", "make_inputs", "normalize_answer", "is_correct"]
