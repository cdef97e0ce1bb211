"""Automated region caption pipeline (RegionGPT's data engine); see docs/datagen.md.

```python
from regiongpt.datagen import DatagenConfig, coco_items, make_teacher, run_datagen
items = coco_items("instances_val2017.json", "val2017")
summary = run_datagen(items, make_teacher("offline"), DatagenConfig(out=Path("gen.jsonl")))
print(summary.format())
```
"""

from regiongpt.datagen.filters import CaptionFilter, FilterConfig
from regiongpt.datagen.pipeline import DatagenConfig, run_datagen
from regiongpt.datagen.sources import RegionItem, coco_items, jsonl_items
from regiongpt.datagen.teacher import (
    Caption,
    RegionRequest,
    Teacher,
    TeacherError,
    TeacherOptions,
    make_teacher,
)

__all__ = [
    "Caption",
    "CaptionFilter",
    "DatagenConfig",
    "FilterConfig",
    "RegionItem",
    "RegionRequest",
    "Teacher",
    "TeacherError",
    "TeacherOptions",
    "coco_items",
    "jsonl_items",
    "make_teacher",
    "run_datagen",
]
