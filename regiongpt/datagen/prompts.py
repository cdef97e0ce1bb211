"""Every prompt template of the caption pipeline, in one place.

Bump :data:`PROMPT_VERSION` when a template changes meaning; :func:`prompt_version` adds a short
hash of the template texts, so an edit without a bump is still visible in the provenance."""

from __future__ import annotations

import hashlib

from regiongpt.regions import Box

PROMPT_VERSION = "datagen-v1"

# ------------------------------------------------------------------ vision-language teachers
#: Stage 1: one global caption per image.
GLOBAL_PROMPT = "Describe this image in one or two sentences: the scene, the main objects and where they are."

#: Stage 2: one detailed caption per region. ``{region}`` is how the region is referred to,
#: ``{class_hint}`` is empty or :data:`CLASS_HINT`, ``{global_caption}`` the stage-1 caption.
REGION_PROMPT = (
    "The whole image shows: {global_caption}\n"
    "Describe {region}{class_hint} in two or three sentences: its appearance (colour, shape, "
    "material), what it is doing and how it relates to its surroundings. Write only the "
    "description, without mentioning boxes or coordinates."
)
CLASS_HINT = ", which is a {class_name}"

#: How the region is named for our own server (it reads the box from the ``regions`` field).
REGION_TAG = "<region1>"
#: How the region is named for other endpoints: the box in the text, the crop as a second image.
REGION_BOX = "the region inside the box [{x1}, {y1}, {x2}, {y2}] (pixel coordinates x1, y1, x2, y2)"
REGION_BOX_CROP = REGION_BOX + ", shown enlarged in the second image"

# ------------------------------------------------------------------ offline teacher (text LM)
OFFLINE_SYSTEM = "You write short, factual descriptions of photos."
OFFLINE_GLOBAL = "A photo shows: {labels}. Describe the photo in one sentence."
OFFLINE_REGION = (
    "Scene: {global_caption}\n"
    "In this scene, describe the {subject} {position} in one or two sentences. "
    "Hints from an image classifier: {labels}."
)
#: The start of the answer, given to the LM (keeps it on the region instead of echoing the scene).
OFFLINE_REGION_START = "The {subject}"

TEMPLATES = (
    GLOBAL_PROMPT,
    REGION_PROMPT,
    CLASS_HINT,
    REGION_TAG,
    REGION_BOX,
    REGION_BOX_CROP,
    OFFLINE_SYSTEM,
    OFFLINE_GLOBAL,
    OFFLINE_REGION,
    OFFLINE_REGION_START,
)


def prompt_version() -> str:
    """``PROMPT_VERSION`` plus a hash of the templates, e.g. ``datagen-v1+3fa2c1d0``."""
    digest = hashlib.sha256("\x00".join(TEMPLATES).encode()).hexdigest()[:8]
    return f"{PROMPT_VERSION}+{digest}"


def region_prompt(global_caption: str, class_name: str | None, region: str) -> str:
    """The stage-2 question for a vision-language teacher."""
    hint = CLASS_HINT.format(class_name=class_name) if class_name else ""
    return REGION_PROMPT.format(global_caption=global_caption.strip(), region=region, class_hint=hint)


def box_reference(box: Box, with_crop: bool) -> str:
    """The region named by its pixel box (for endpoints that do not read our ``regions`` field)."""
    coords = {k: round(v) for k, v in zip(("x1", "y1", "x2", "y2"), box.as_list())}
    return (REGION_BOX_CROP if with_crop else REGION_BOX).format(**coords)


def describe_position(box: Box, size: tuple[int, int]) -> str:
    """Where the box is and how much of the image it covers, in words:
    ``"in the upper left of the photo, covering 12% of it"``."""
    width, height = size
    cx, cy = (box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height
    row = "upper" if cy < 1 / 3 else ("lower" if cy > 2 / 3 else "")
    col = "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "")
    if row and col:
        where = f"in the {row} {col} of the photo"
    elif row:
        where = f"in the {row} part of the photo"
    elif col:
        where = f"on the {col} of the photo"
    else:
        where = "in the center of the photo"
    share = max(1, round(100 * box.area / (width * height)))
    return f"{where}, covering {min(share, 100)}% of it"


def format_labels(labels: list[tuple[str, float]]) -> str:
    """Classifier labels as prompt text, best first: ``"espresso, cup, coffee mug"``."""
    return ", ".join(name for name, _ in labels)
