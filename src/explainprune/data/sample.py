"""The `Sample` record shared by every data source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class Sample:
    """One visual question with its image; synthetic samples also carry objects and a pixel mask."""

    id: str
    image: Image.Image
    question: str
    answer: str
    qtype: str | None = None
    objects: list[dict] | None = None
    mask: np.ndarray | None = None
