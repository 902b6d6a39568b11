"""Qwen2.5-VL: as Qwen2-VL, with video positions spaced by seconds per temporal patch."""

from __future__ import annotations

from .qwen2_vl import Qwen2VLAdapter


class Qwen25VLAdapter(Qwen2VLAdapter):
    family = "qwen2.5-vl"
    model_types = ("qwen2_5_vl",)

    def rope_index_kwargs(self, inputs: dict) -> dict:
        return {"second_per_grid_ts": inputs.get("second_per_grid_ts")}
