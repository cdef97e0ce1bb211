"""RegionWorld samples: one canonical :class:`~regiongpt.data.format.Record` per question.

Every question goes through :func:`regiongpt.tasks.with_instruction` (single-region category /
brief / detailed use :func:`regiongpt.tasks.build_question` exactly). Answers are closed-set and
short:

========================  =====================================================================
task                      answer
========================  =====================================================================
category                  the shape, "circle"
brief                     "<size> <colour> <texture> <shape>", "small red striped circle"
detailed                  one of :data:`DETAILED_TEMPLATES` (attributes, position, nearest object)
relation                  "left" / "right" / "above" / "below" (where <region1> is relative to
                          <region2>, dominant axis of the box centres; ambiguous pairs skipped),
                          or "yes" / "no" for "larger" (visible area, ratio >= 1.5) and
                          "overlap" (boxes intersect; gaps under 4 px skipped)
choose_region             "region K" for an expression matching exactly one listed region
yes_no                    POPE style, no regions, in yes/no pairs per image and POPE split
multiple_choice           the option letter "A".."D" (colour, shape or texture of <region1>)
========================  =====================================================================

``meta`` always holds ``image_index``, ``split``, ``theme``, ``objects`` (attributes, box, area
of each region in order), ``size`` (size bucket of the region asked about; the first region for
relation; for a yes/no "yes", the queried shape's largest instance) and ``compositional`` (a
held-out colour-shape pair is involved).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from regiongpt.data.format import GPT, HUMAN, Record
from regiongpt.data.regionworld import (
    BRIEF_ORDER,
    COLOURS,
    IMAGE_SIZE,
    SHAPES,
    SIZES,
    TEXTURES,
    RegionWorldConfig,
    Scene,
    SceneObject,
    image_path,
    shape_statistics,
)
from regiongpt.tasks import Task, build_question, with_instruction

#: Samples per image and task (fractions spread evenly over images, see :func:`sample_count`):
#: 5 per image, so 20k training images give about 100k samples (relation and choose_region skip
#: the few images where no unambiguous question exists).
DEFAULT_SAMPLES_PER_IMAGE: dict[str, float] = {
    Task.CATEGORY.value: 1.0,
    Task.BRIEF.value: 1.0,
    Task.DETAILED.value: 0.5,
    Task.RELATION.value: 0.75,
    Task.CHOOSE_REGION.value: 0.75,
    Task.YES_NO.value: 0.5,
    Task.MULTIPLE_CHOICE.value: 0.5,
}
POPE_SPLITS: tuple[str, ...] = ("random", "popular", "adversarial")
DETAILED_TEMPLATES: tuple[str, ...] = (
    "A {size} {colour} {texture} {shape} in the {position} of the image. It is {relation} the {neighbour}.",
    "This {shape} is {size}, {colour} and {texture}, in the {position} of the image. "
    "The nearest object is the {neighbour}, {neighbour_relation} it.",
    "In the {position} of the image there is a {size} {colour} {texture} {shape}, {relation} the {neighbour}.",
)
SOLO_TEMPLATE = "A {size} {colour} {texture} {shape} in the {position} of the image."
#: Attribute kinds an expression may use (always ending with the shape), shortest first.
EXPRESSION_KINDS: tuple[tuple[str, ...], ...] = (
    ("shape",),
    ("colour", "shape"),
    ("size", "shape"),
    ("texture", "shape"),
    ("size", "colour", "shape"),
    ("colour", "texture", "shape"),
    ("size", "colour", "texture", "shape"),
)
MC_QUESTIONS: dict[str, str] = {
    "colour": "What colour is <region1>?",
    "shape": "What shape is <region1>?",
    "texture": "What texture does <region1> have?",
}
_ROWS, _COLS = ("upper", "middle", "lower"), ("left", "middle", "right")
_LETTERS = "ABCD"


def effective_rates(config: RegionWorldConfig) -> dict[str, float]:
    """Samples per image for every task: the defaults updated with ``config.samples_per_image``."""
    return {
        **DEFAULT_SAMPLES_PER_IMAGE,
        **{Task.parse(k).value: float(v) for k, v in config.samples_per_image.items()},
    }


def position_name(x: float, y: float) -> str:
    """3x3 grid name of a point: "upper left", "upper middle", ..., "centre", ..., "lower right"."""
    row, col = min(int(3 * y / IMAGE_SIZE), 2), min(int(3 * x / IMAGE_SIZE), 2)
    return "centre" if (row, col) == (1, 1) else f"{_ROWS[row]} {_COLS[col]}"


def direction(a: SceneObject, b: SceneObject, strict: bool = True) -> str | None:
    """Where ``a`` is relative to ``b``: "left"/"right"/"above"/"below" on the dominant axis of
    the box centres (image y grows downwards). With ``strict``, None unless the dominant offset
    is >= 12 px and >= 1.5x the other one."""
    dx, dy = a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]
    major, minor = max(abs(dx), abs(dy)), min(abs(dx), abs(dy))
    if strict and (major < 12 or major < 1.5 * minor):
        return None
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def boxes_overlap(a: SceneObject, b: SceneObject, min_gap: float = 4.0) -> bool | None:
    """True if the boxes intersect with positive area, False if separated by >= ``min_gap`` px, else None."""
    gap_x = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    gap_y = max(a.box[1], b.box[1]) - min(a.box[3], b.box[3])
    if gap_x < 0 and gap_y < 0:
        return True
    return False if max(gap_x, gap_y) >= min_gap else None


def larger(a: SceneObject, b: SceneObject, min_ratio: float = 1.5) -> bool | None:
    """Is ``a``'s visible area larger than ``b``'s? None when the ratio is under ``min_ratio``."""
    if a.area >= min_ratio * b.area:
        return True
    return False if b.area >= min_ratio * a.area else None


def expression(obj: SceneObject, kinds: tuple[str, ...]) -> str:
    """``"the " + attribute words in brief order``, e.g. "the small red circle"."""
    return "the " + " ".join(obj.attributes[k] for k in BRIEF_ORDER if k in kinds)


def region_entry(obj: SceneObject, as_mask: bool) -> dict[str, Any]:
    """``{"box": xyxy, "label": brief}`` or ``{"rle": COCO RLE with str counts, "label": brief}``."""
    if not as_mask:
        return {"box": list(obj.box), "label": obj.brief}
    rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
    return {
        "rle": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "label": obj.brief,
    }


class _Builder:
    """Builds the samples of one scene; all randomness comes from ``rng`` in a fixed order."""

    def __init__(self, scene: Scene, rng: np.random.Generator, config: RegionWorldConfig) -> None:
        self.scene, self.rng, self.config = scene, rng, config
        self.stats = shape_statistics(config.min_objects, config.max_objects)
        comp = [o for o in scene.objects if o.compositional]
        self.targets = comp or list(scene.objects)  # test_comp asks about held-out pairs
        self.records: list[Record] = []
        self._order: np.ndarray = np.arange(len(self.targets))

    def pick(self, items: list[Any]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def add(
        self, task: Task, k: int, regions: list[SceneObject], question: str, answer: str, **meta: Any
    ) -> None:
        scene = self.scene
        entries = [region_entry(o, bool(self.rng.random() < self.config.mask_fraction)) for o in regions]
        self.records.append(
            Record(
                id=f"rw-{scene.split}-{scene.index:06d}-{task.value}-{k}",
                image=image_path(scene.split, scene.index),
                regions=entries,
                conversations=[{"from": HUMAN, "value": question}, {"from": GPT, "value": answer}],
                task=task,
                width=IMAGE_SIZE,
                height=IMAGE_SIZE,
                meta={
                    "image_index": scene.index,
                    "split": scene.split,
                    "theme": scene.theme,
                    "objects": [o.to_meta() for o in regions],
                    "size": regions[0].size if regions else None,
                    "compositional": any(o.compositional for o in regions),
                    **meta,
                },
            )
        )

    def target(self, k: int) -> SceneObject:
        """The k-th region asked about by a task: distinct regions until all are used."""
        if k == 0:
            self._order = self.rng.permutation(len(self.targets))
        return self.targets[int(self._order[k % len(self._order)])]

    def category(self, k: int) -> None:
        obj = self.target(k)
        self.add(Task.CATEGORY, k, [obj], build_question(Task.CATEGORY, 1), obj.shape)

    def brief(self, k: int) -> None:
        obj = self.target(k)
        self.add(Task.BRIEF, k, [obj], build_question(Task.BRIEF, 1), obj.brief)

    def detailed(self, k: int) -> None:
        obj = self.target(k)
        position = position_name(*obj.centre)
        others = [o for o in self.scene.objects if o is not obj]
        if not others:  # a one-object scene (min_objects=1)
            answer = SOLO_TEMPLATE.format(**obj.attributes, position=position)
            self.add(Task.DETAILED, k, [obj], build_question(Task.DETAILED, 1), answer, position=position)
            return
        nearest = min(
            others, key=lambda o: (o.centre[0] - obj.centre[0]) ** 2 + (o.centre[1] - obj.centre[1]) ** 2
        )
        phrase = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
        template = int(self.rng.integers(len(DETAILED_TEMPLATES)))
        answer = DETAILED_TEMPLATES[template].format(
            **obj.attributes,
            position=position,
            neighbour=f"{nearest.colour} {nearest.shape}",
            relation=phrase[direction(obj, nearest, strict=False) or "left"],
            neighbour_relation=phrase[direction(nearest, obj, strict=False) or "left"],
        )
        self.add(
            Task.DETAILED,
            k,
            [obj],
            build_question(Task.DETAILED, 1),
            answer,
            template=template,
            position=position,
            neighbour=nearest.to_meta(),
        )

    def relation(self, k: int) -> None:
        checks: dict[str, tuple[str, Callable[[SceneObject, SceneObject], Any]]] = {
            "position": ("Where is <region1> relative to <region2>?", direction),
            "larger": ("Is <region1> larger than <region2>?", larger),
            "overlap": ("Does <region1> overlap <region2>?", boxes_overlap),
        }
        objects, comp_only = self.scene.objects, self.targets[0].compositional
        options: dict[str, dict[str, list[tuple[SceneObject, SceneObject]]]] = {}
        for kind, (_, check) in checks.items():
            for a in objects:
                for b in objects:
                    if a is b or (comp_only and not (a.compositional or b.compositional)):
                        continue
                    value = check(a, b)
                    if value is not None:
                        answer = value if isinstance(value, str) else ("yes" if value else "no")
                        options.setdefault(kind, {}).setdefault(answer, []).append((a, b))
        if not options:
            return
        kind = self.pick(sorted(options))
        answer = self.pick(sorted(options[kind]))  # balance the answers of each kind
        a, b = self.pick(options[kind][answer])
        self.add(
            Task.RELATION, k, [a, b], with_instruction(checks[kind][0], Task.RELATION), answer, relation=kind
        )

    def choose_region(self, k: int) -> None:
        objects = self.scene.objects
        if len(objects) < 2:
            return
        count = int(self.rng.integers(2, min(4, len(objects)) + 1))
        target = self.target(k)
        others = [objects[i] for i in self.rng.permutation(len(objects)) if objects[i] is not target][
            : count - 1
        ]
        listed = [others[i] for i in self.rng.permutation(len(others))]
        listed.insert(int(self.rng.integers(len(listed) + 1)), target)
        unique = [
            kinds
            for kinds in EXPRESSION_KINDS
            if sum(expression(o, kinds) == expression(target, kinds) for o in listed) == 1
        ]
        if not unique:  # identical objects listed
            return
        kinds = self.pick(unique)
        tags = [f"<region{i + 1}>" for i in range(len(listed))]
        choices = f"{', '.join(tags[:-1])} or {tags[-1]}"
        question = f"Which region is {expression(target, kinds)}: {choices}?"
        position = listed.index(target) + 1
        self.add(
            Task.CHOOSE_REGION,
            k,
            listed,
            with_instruction(question, Task.CHOOSE_REGION),
            f"region {position}",
            expression=expression(target, kinds),
            expression_kinds=list(kinds),
            target=position,
            size=target.size,
        )

    def yes_no(self, k: int) -> None:
        present = {o.shape for o in self.scene.objects}
        pope_split = POPE_SPLITS[(self.scene.index + k // 2) % len(POPE_SPLITS)]
        size = None  # "yes": the size of the queried shape's largest instance
        if k % 2 == 0:
            label, shape = "yes", self.pick(sorted(present, key=SHAPES.index))
            size = max((o.size for o in self.scene.objects if o.shape == shape), key=SIZES.index)
        else:
            label, shape = "no", self.negative(present, pope_split, k // 2)
        question = with_instruction(f"Is there a {shape} in the image?", Task.YES_NO)
        self.add(
            Task.YES_NO,
            k,
            [],
            question,
            label,
            pope_split=pope_split,
            query=shape,
            shapes_present=sorted(present, key=SHAPES.index),
            size=size,
            compositional=any(o.compositional for o in self.scene.objects),
        )

    def negative(self, present: set[str], pope_split: str, rank: int) -> str:
        """An absent shape: uniform (random), most frequent (popular) or most co-occurring with
        the present shapes (adversarial); ``rank`` steps down the ranking for repeat questions."""
        absent = [s for s in SHAPES if s not in present]
        if pope_split == "random":
            return self.pick(absent)
        if pope_split == "popular":
            ranked = [s for s in self.stats.popular_order() if s not in present]
        else:
            ranked = self.stats.adversarial_order(present)
        return ranked[min(rank, len(ranked) - 1)]

    def multiple_choice(self, k: int) -> None:
        obj = self.target(k)
        kind = self.pick(list(MC_QUESTIONS))
        words = {"colour": list(COLOURS), "shape": list(SHAPES), "texture": list(TEXTURES)}[kind]
        correct = obj.attributes[kind]
        distractors = [words[i] for i in self.rng.permutation(len(words)) if words[i] != correct][:3]
        options = [distractors[i] for i in self.rng.permutation(3)]
        letter = int(self.rng.integers(4))
        options.insert(letter, correct)
        listing = " ".join(f"({_LETTERS[i]}) {option}" for i, option in enumerate(options))
        question = with_instruction(f"{MC_QUESTIONS[kind]} {listing}", Task.MULTIPLE_CHOICE)
        self.add(Task.MULTIPLE_CHOICE, k, [obj], question, _LETTERS[letter], attribute=kind, options=options)


def sample_count(rate: float, index: int, phase: float = 0.0) -> int:
    """Samples for image ``index`` at ``rate`` per image: ``floor((i + 1) r + phase) - floor(i r + phase)``,
    so any run of N images gets ``N * rate`` samples, +-1, and a fraction spreads evenly."""
    return int(np.floor((index + 1) * rate + phase) - np.floor(index * rate + phase))


def build_samples(
    scene: Scene, rng: np.random.Generator, config: RegionWorldConfig | None = None
) -> list[Record]:
    """All samples of one scene, tasks in :class:`~regiongpt.tasks.Task` order, counts from
    :func:`sample_count` (a different phase per task). yes_no samples come in (yes, no) pairs of
    one POPE split, so labels are exactly balanced."""
    config = config or RegionWorldConfig()
    builder = _Builder(scene, rng, config)
    for ordinal, (task, rate) in enumerate(effective_rates(config).items()):
        unit = 2 if task == Task.YES_NO.value else 1
        phase = (ordinal * 0.618034) % 1.0
        for k in range(unit * sample_count(rate / unit, scene.index, phase)):
            getattr(builder, task)(k)
    return builder.records
