"""The `Sample` record shared by every data source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class Sample:
    """One visual question with its image, or with its video (a list of frames, `image` None).

    Synthetic samples also carry their objects and a pixel mask of object indices: (H, W) for an image,
    (frames, H, W) for a video.
    """

    id: str
    image: Image.Image | None
    question: str
    answer: str
    qtype: str | None = None
    objects: list[dict] | None = None
    mask: np.ndarray | None = None
    video: list[Image.Image] | None = None

    @property
    def modality(self) -> str:
        """'video' or 'image'."""
        return "video" if self.video is not None else "image"

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the image or of the video's frames."""
        return (self.video[0] if self.video is not None else self.image).size
