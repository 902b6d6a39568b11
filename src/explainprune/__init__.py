"""explainprune: explainability-guided visual token compression for multimodal LLMs.

The public names are imported on first use, so `import explainprune.cli` (the command line's
`--help`) does not import torch.
"""

from importlib import import_module

_PUBLIC = {
    "Compressor": ".compressor",
    "Prepared": ".compressor",
    "PruneStats": ".compressor",
    "load_embedded": ".embedded",
    "load_model": ".loading",
    "ExplainPruneError": ".errors",
    "InputMismatchError": ".errors",
    "UnsupportedModelError": ".errors",
    "SCORERS": ".scoring",
    "Scorer": ".scoring",
    "register": ".scoring",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'explainprune' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
