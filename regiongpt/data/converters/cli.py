"""``regiongpt data convert FORMAT ...``: one command per published data set format.

Every command writes canonical JSONL (``--out``, atomically) and prints one summary line.
Bad input exits with status 2 and one ``error: ...`` line on stderr naming the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from regiongpt.data.converters.base import Stats
from regiongpt.data.converters.coco import coco_category_records, lvis_category_records
from regiongpt.data.converters.flickr30k import flickr30k_records
from regiongpt.data.converters.llava_instruct import llava_instruct_records
from regiongpt.data.converters.pope import pope_records
from regiongpt.data.converters.refcoco import mdetr_refexp_records, refcoco_records
from regiongpt.data.converters.vcr import vcr_records
from regiongpt.data.converters.vg import vg_grit_records, vg_region_records
from regiongpt.data.format import Record, write_jsonl
from regiongpt.data.mix import write_mix

app = typer.Typer(
    help="Convert published region data sets to regiongpt's canonical JSONL.\n\n"
    "Example: regiongpt data convert coco annotations/instances_val2017.json "
    "--out data/coco_val.jsonl --image-root coco/val2017",
    no_args_is_help=True,
    add_completion=False,
)


class GeometryChoice(str, Enum):
    mask = "mask"
    box = "box"


class CaptionTask(str, Enum):
    brief = "brief"
    detailed = "detailed"


class RefTask(str, Enum):
    caption = "caption"
    rec = "rec"


class VcrMode(str, Enum):
    qa = "qa"
    qar = "qar"


Out = Annotated[Path, typer.Option("--out", "-o", help="Output JSONL file, e.g. data/coco_train.jsonl.")]
ImageRoot = Annotated[
    str,
    typer.Option(
        help="Prefix written before image file names, relative to the data root, e.g. coco/train2017."
    ),
]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")]
GeometryOpt = Annotated[
    GeometryChoice, typer.Option("--geometry", help="Regions as masks (polygon/RLE, when present) or boxes.")
]
PerSample = Annotated[
    int, typer.Option("--regions-per-sample", min=1, help="Regions asked about in one multi-turn record.")
]


def _fail(error: Exception) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def _refuse_overwriting_inputs(out: Path, inputs: list[Path | None]) -> None:
    """A user error to name an input file as ``--out``: the conversion would replace it."""
    for path in inputs:
        if path is not None and path.exists() and out.exists() and out.samefile(path):
            _fail(ValueError(f"--out {out} is an input of this command; write to another file"))


def _convert(out: Path, inputs: list[Path | None], make: Callable[[Stats], Iterable[Record]]) -> None:
    _refuse_overwriting_inputs(out, inputs)
    stats = Stats()
    try:
        written = write_jsonl(out, make(stats))
    except (ValueError, OSError) as error:
        _fail(error)
    typer.echo(stats.summary(written, out))


@app.command()
def coco(
    instances: Annotated[Path, typer.Argument(help="COCO instances json, e.g. instances_train2017.json.")],
    out: Out,
    image_root: ImageRoot = "",
    geometry: GeometryOpt = GeometryChoice.mask,
    include_crowd: Annotated[bool, typer.Option(help="Keep iscrowd=1 annotations.")] = False,
    min_area: Annotated[float, typer.Option(help="Skip regions smaller than this many pixels.")] = 0.0,
    regions_per_sample: PerSample = 1,
    progress: Progress = True,
) -> None:
    """COCO instances -> category records ("What is the category of <region1>?" -> "dog").

    Example: regiongpt data convert coco instances_train2017.json --out data/coco_train.jsonl --image-root coco/train2017 --min-area 100
    """
    _convert(out, [instances], lambda stats: coco_category_records(
        instances, image_root=image_root, geometry=geometry.value, include_crowd=include_crowd,
        min_area=min_area, regions_per_sample=regions_per_sample, stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command()
def lvis(
    instances: Annotated[Path, typer.Argument(help="LVIS json, e.g. lvis_v1_train.json.")],
    out: Out,
    image_root: ImageRoot = "",
    geometry: GeometryOpt = GeometryChoice.mask,
    min_area: Annotated[float, typer.Option(help="Skip regions smaller than this many pixels.")] = 0.0,
    raw_names: Annotated[bool, typer.Option(help="Keep names as 'bus_(vehicle)' instead of 'bus'.")] = False,
    regions_per_sample: PerSample = 1,
    progress: Progress = True,
) -> None:
    """LVIS -> category records; images come from coco_url (train2017/000000391895.jpg).

    Example: regiongpt data convert lvis lvis_v1_val.json --out data/lvis_val.jsonl --image-root coco
    """
    _convert(out, [instances], lambda stats: lvis_category_records(
        instances, image_root=image_root, geometry=geometry.value, min_area=min_area,
        clean_names=not raw_names, regions_per_sample=regions_per_sample, stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command()
def refcoco(
    refs: Annotated[Path, typer.Argument(help="refs(unc).p, refs(umd).p or refs(google).p.")],
    instances: Annotated[Path, typer.Argument(help="The instances.json next to it.")],
    out: Out,
    image_root: ImageRoot = "",
    name: Annotated[
        str, typer.Option(help="Data set name for ids: refcoco, refcoco+ or refcocog.")
    ] = "refcoco",
    split: Annotated[
        Optional[list[str]], typer.Option(help="Keep this split (repeatable): train, val, testA...")
    ] = None,
    task: Annotated[Optional[list[RefTask]], typer.Option(help="caption and/or rec (default both).")] = None,
    geometry: GeometryOpt = GeometryChoice.mask,
    max_candidates: Annotated[Optional[int], typer.Option(min=2, help="Cap REC candidate regions.")] = None,
    progress: Progress = True,
) -> None:
    """RefCOCO/+/g -> region captions (expression) and REC choices ("region K").

    Example: regiongpt data convert refcoco refcocog/refs(umd).p refcocog/instances.json --name refcocog --split val --out data/refcocog_val.jsonl --image-root coco/train2014
    """
    tasks = [t.value for t in task] if task else ["caption", "rec"]
    _convert(out, [refs, instances], lambda stats: refcoco_records(
        refs, instances, image_root=image_root, splits=split, tasks=tasks, geometry=geometry.value,
        max_candidates=max_candidates, name=name, stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command("mdetr-refexp")
def mdetr_refexp(
    refexp: Annotated[Path, typer.Argument(help="MDETR json, e.g. final_refcocog_val.json.")],
    out: Out,
    image_root: ImageRoot = "",
    instances: Annotated[
        Optional[Path], typer.Option(help="COCO instances json, needed for --task rec.")
    ] = None,
    task: Annotated[Optional[list[RefTask]], typer.Option(help="caption (default) and/or rec.")] = None,
    geometry: GeometryOpt = GeometryChoice.mask,
    max_candidates: Annotated[Optional[int], typer.Option(min=2, help="Cap REC candidate regions.")] = None,
    progress: Progress = True,
) -> None:
    """MDETR refexp json -> region captions (and REC choices with --instances).

    Example: regiongpt data convert mdetr-refexp final_refcocog_val.json --out data/refcocog_val.jsonl --image-root coco/train2014
    """
    tasks = [t.value for t in task] if task else ["caption"]
    _convert(out, [refexp, instances], lambda stats: mdetr_refexp_records(
        refexp, image_root=image_root, instances=instances, tasks=tasks, geometry=geometry.value,
        max_candidates=max_candidates, stats=stats, show_progress=progress,
    ))  # fmt: skip


CaptionTaskOpt = Annotated[CaptionTask, typer.Option("--task", help="brief or detailed question.")]
MinSize = Annotated[float, typer.Option(help="Skip boxes narrower or shorter than this (pixels).")]


@app.command()
def vg(
    regions: Annotated[Path, typer.Argument(help="Visual Genome region_descriptions.json.")],
    out: Out,
    image_root: ImageRoot = "",
    image_data: Annotated[
        Optional[Path], typer.Option(help="image_data.json: image folders and sizes.")
    ] = None,
    task: CaptionTaskOpt = CaptionTask.brief,
    regions_per_sample: PerSample = 1,
    min_size: MinSize = 0.0,
    progress: Progress = True,
) -> None:
    """Visual Genome region descriptions -> region captions (phrase).

    Example: regiongpt data convert vg region_descriptions.json --image-data image_data.json --out data/vg.jsonl --image-root vg --regions-per-sample 8
    """
    _convert(out, [regions, image_data], lambda stats: vg_region_records(
        regions, image_root=image_root, image_data=image_data, task=task.value,
        regions_per_sample=regions_per_sample, min_size=min_size, stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command("vg-grit")
def vg_grit(
    annotations: Annotated[Path, typer.Argument(help="GRiT's COCO-format VG json (train.json / test.json).")],
    out: Out,
    image_root: ImageRoot = "",
    task: CaptionTaskOpt = CaptionTask.brief,
    regions_per_sample: PerSample = 1,
    min_size: MinSize = 0.0,
    progress: Progress = True,
) -> None:
    """GRiT's COCO-format Visual Genome -> region captions (annotation caption).

    Example: regiongpt data convert vg-grit vg/annotations/test.json --out data/vg_test.jsonl --image-root vg/images
    """
    _convert(out, [annotations], lambda stats: vg_grit_records(
        annotations, image_root=image_root, task=task.value, regions_per_sample=regions_per_sample,
        min_size=min_size, stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command()
def flickr30k(
    annotations: Annotated[Path, typer.Argument(help="MDETR json, e.g. final_flickr_separateGT_train.json.")],
    out: Out,
    image_root: ImageRoot = "",
    describe: Annotated[bool, typer.Option(help="Add the multi-region description turn.")] = True,
    phrases: Annotated[bool, typer.Option(help="Add one phrase turn per region.")] = True,
    max_regions: Annotated[Optional[int], typer.Option(min=1, help="Keep the first N regions.")] = None,
    progress: Progress = True,
) -> None:
    """Flickr30k Entities -> caption turn over all boxes plus a phrase turn per box.

    Example: regiongpt data convert flickr30k final_flickr_separateGT_train.json --out data/flickr30k.jsonl --image-root flickr30k/images
    """
    _convert(out, [annotations], lambda stats: flickr30k_records(
        annotations, image_root=image_root, describe=describe, phrases=phrases, max_regions=max_regions,
        stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command()
def vcr(
    annotations: Annotated[Path, typer.Argument(help="VCR train.jsonl or val.jsonl.")],
    out: Out,
    images_dir: Annotated[Path, typer.Option(help="The vcr1images folder (metadata json files are read).")],
    image_root: ImageRoot = "",
    geometry: GeometryOpt = GeometryChoice.mask,
    mode: Annotated[
        Optional[list[VcrMode]], typer.Option(help="qa (Q->A) and/or qar (QA->R); default both.")
    ] = None,
    progress: Progress = True,
) -> None:
    """VCR -> multiple-choice records; object references become <regionK> tags.

    Example: regiongpt data convert vcr val.jsonl --images-dir vcr/vcr1images --out data/vcr_val.jsonl --image-root vcr/vcr1images
    """
    modes = [m.value for m in mode] if mode else ["qa", "qar"]
    _convert(out, [annotations], lambda stats: vcr_records(
        annotations, images_dir=images_dir, image_root=image_root, geometry=geometry.value, modes=modes,
        stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command("llava-instruct")
def llava_instruct(
    conversations: Annotated[Path, typer.Argument(help="LLaVA json, e.g. llava_instruct_150k.json.")],
    detections: Annotated[Path, typer.Argument(help="Detector output, COCO results json.")],
    out: Out,
    image_root: ImageRoot = "",
    categories: Annotated[
        Optional[Path], typer.Option(help="COCO-style json naming category_id values.")
    ] = None,
    score_threshold: Annotated[float, typer.Option(help="Keep detections scoring at least this.")] = 0.5,
    max_regions: Annotated[int, typer.Option(min=1, help="Keep the N best detections per image.")] = 10,
    progress: Progress = True,
) -> None:
    """LLaVA-Instruct + detections -> conversations opened by "<region1> may feature a person."

    Example: regiongpt data convert llava-instruct llava_instruct_150k.json dets_train2017.json --categories instances_val2017.json --out data/llava_det.jsonl --image-root coco/train2017
    """
    _convert(out, [conversations, detections, categories], lambda stats: llava_instruct_records(
        conversations, detections, image_root=image_root, categories=categories,
        score_threshold=score_threshold, max_regions=max_regions, stats=stats, show_progress=progress,
    ))  # fmt: skip


@app.command()
def pope(
    questions: Annotated[Path, typer.Argument(help="POPE file, e.g. coco_pope_adversarial.json.")],
    out: Out,
    image_root: ImageRoot = "",
    split: Annotated[
        Optional[str], typer.Option(help="random, popular or adversarial (default: from the file name).")
    ] = None,
    progress: Progress = True,
) -> None:
    """POPE -> yes/no records ("Is there a dog in the image? Answer yes or no.").

    Example: regiongpt data convert pope coco_pope_random.json --out data/pope_random.jsonl --image-root coco/val2014
    """
    _convert(out, [questions], lambda stats: pope_records(
        questions, image_root=image_root, split=split, stats=stats, show_progress=progress
    ))  # fmt: skip


@app.command()
def mix(
    mix_file: Annotated[
        Path, typer.Argument(help="Mix YAML: a list of {path, ratio | count, name, root, tasks, where}.")
    ],
    out: Out,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed (overrides the file's).")] = None,
    shuffle: Annotated[
        Optional[bool], typer.Option("--shuffle/--no-shuffle", help="Shuffle the output.")
    ] = None,
) -> None:
    """Mix canonical JSONL files into one, deterministically.

    Example mix.yaml: [{path: coco.jsonl, ratio: 0.5}, {path: vg.jsonl, count: 20000, name: vg}]

    Example: regiongpt data convert mix my_mix.yaml --out data/stage2.jsonl --seed 0
    """
    _refuse_overwriting_inputs(out, [mix_file])
    try:
        counts = write_mix(mix_file, out, seed=seed, shuffle=shuffle)
    except (ValueError, OSError) as error:
        _fail(error)
    parts = ", ".join(f"{name}: {count}" for name, count in counts.items())
    typer.echo(f"wrote {sum(counts.values())} records to {out} ({parts})")
