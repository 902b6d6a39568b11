"""explainprune inside vLLM: question-aware visual token pruning for Qwen2-VL and Qwen2.5-VL.

vLLM loads `plugin.register` through the `vllm.general_plugins` entry point; a deployment opts in by
naming one of `ARCHITECTURES` in `hf_overrides` (see `settings.hf_overrides` and docs/vllm.md).
Nothing here imports vLLM until vLLM itself loads the plugin.
"""

from .settings import ARCHITECTURES, PruneSettings, hf_overrides

__all__ = ["ARCHITECTURES", "PruneSettings", "hf_overrides"]
