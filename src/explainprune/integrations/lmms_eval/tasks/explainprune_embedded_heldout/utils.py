"""Redraw each scene from its seeds (explainprune's synthetic generator)."""

from explainprune.data.synthetic import generate_sample


def scene_image(doc):
    return [generate_sample(doc["split"], int(doc["seed"]), int(doc["index"]), [int(doc["size"])]).image]
