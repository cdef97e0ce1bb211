"""Readers for the published region data set formats, writing canonical JSONL records.

Each converter is a generator of :class:`regiongpt.data.format.Record`; pass a
:class:`~regiongpt.data.converters.base.Stats` to collect what was skipped. The command line
is :mod:`regiongpt.data.converters.cli`; ``docs/datasets.md`` describes every format.
"""

from regiongpt.data.converters.base import Stats
from regiongpt.data.converters.coco import coco_category_records, load_coco, lvis_category_records
from regiongpt.data.converters.detections import Detection, image_key, load_detections, load_proposals
from regiongpt.data.converters.flickr30k import flickr30k_records
from regiongpt.data.converters.llava_instruct import llava_instruct_records
from regiongpt.data.converters.pope import pope_records
from regiongpt.data.converters.refcoco import load_refs, mdetr_refexp_records, refcoco_records
from regiongpt.data.converters.vcr import vcr_records
from regiongpt.data.converters.vg import vg_grit_records, vg_region_records

__all__ = [
    "Detection",
    "Stats",
    "coco_category_records",
    "flickr30k_records",
    "image_key",
    "llava_instruct_records",
    "load_coco",
    "load_detections",
    "load_proposals",
    "load_refs",
    "lvis_category_records",
    "mdetr_refexp_records",
    "pope_records",
    "refcoco_records",
    "vcr_records",
    "vg_grit_records",
    "vg_region_records",
]
