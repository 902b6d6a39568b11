"""Images as the models need them: 8-bit RGB, as an image viewer shows the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explainprune.errors import ExplainPruneError

WHITE = (255, 255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of `image` as a viewer shows it.

    EXIF orientation is applied; 16-bit images ("I;16*", and "I" holding values above 255) are scaled
    to 8 bits (v / 257), not clipped to white; transparency is composited on white, as transformers'
    `convert_to_rgb` does. Floating-point images are refused (their range is not defined).
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "F":
        raise ExplainPruneError("floating-point images (mode F) are not supported: save it as an 8- or 16-bit image")
    if mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
                raise ExplainPruneError(
                    f"a 32-bit image with values in [{values.min():.0f}, {values.max():.0f}]: save it as an 8- or 16-bit image"
                )
            values = values / 257
        return Image.fromarray(np.rint(values).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        try:
            rgba = image.convert("RGBA")
        except ValueError:
            raise ExplainPruneError(f"images of mode {mode} are not supported: save it as RGB or RGBA") from None
        return Image.alpha_composite(Image.new("RGBA", image.size, WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """The image file at `path` as 8-bit RGB (`to_rgb`), or one line saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ExplainPruneError(f"image not found: {path}")
    try:
        with Image.open(path) as raw:
            return to_rgb(raw)
    except UnidentifiedImageError:
        raise ExplainPruneError(f"{path} is not an image file PIL can read (PNG, JPEG, ...)") from None
    except Image.DecompressionBombError as error:
        raise ExplainPruneError(f"{path}: {error}; downscale the image") from None
    except OSError as error:
        raise ExplainPruneError(f"{path} could not be read as an image ({error}): is it truncated or corrupt?") from None
