"""``local:MODEL``: a saved regiongpt checkpoint as the teacher (tiny random model)."""

from __future__ import annotations

from regiongpt.api import RegionGPT
from regiongpt.data.format import read_jsonl
from regiongpt.datagen.filters import FilterConfig
from regiongpt.datagen.pipeline import DatagenConfig, run_datagen, side_paths
from regiongpt.datagen.sources import jsonl_items
from regiongpt.datagen.teacher import TeacherOptions, make_teacher


def test_local_teacher_from_a_checkpoint(tiny_factory, regions_file, tmp_path):
    model, processor = tiny_factory(text_overrides={"tie_word_embeddings": False})
    RegionGPT(model, processor).save_pretrained(tmp_path / "ckpt")
    teacher = make_teacher(f"local:{tmp_path / 'ckpt'}", TeacherOptions(max_new_tokens=5, workers=4))
    assert teacher.name == f"local:{tmp_path / 'ckpt'}@float32" and teacher.max_workers == 1
    out = tmp_path / "gen.jsonl"
    filters = FilterConfig(min_words=1, max_repeat_ratio=1, min_class_similarity=0, dedupe=False)
    summary = run_datagen(
        jsonl_items(regions_file), teacher, DatagenConfig(out=out, filters=filters, progress=False)
    )
    assert summary.regions == 3 and summary.missing == 0
    records = list(read_jsonl(out)) + list(read_jsonl(side_paths(out)[0]))
    assert sorted(r.id for r in records) == ["a-r1", "a-r2", "b-r1"]
    assert {r.meta["class_name"] for r in records} == {"cat", None, "cup"}


def test_local_teacher_loads_in_the_asked_dtype(tiny_factory, tmp_path):
    import pytest
    import torch

    model, processor = tiny_factory()
    RegionGPT(model, processor).save_pretrained(tmp_path / "ckpt")
    spec = f"local:{tmp_path / 'ckpt'}"
    teacher = make_teacher(spec, TeacherOptions(dtype="bfloat16"))
    assert teacher.engine.model.dtype == torch.bfloat16
    assert make_teacher(spec, TeacherOptions()).engine.model.dtype == torch.float32  # auto on CPU
    with pytest.raises(ValueError, match="unknown dtype 'bf17'"):
        make_teacher(spec, TeacherOptions(dtype="bf17"))


def test_resume_in_another_dtype_is_refused(tiny_factory, regions_file, tmp_path):
    """Captions of a float32 and a bfloat16 teacher differ: one output file holds one of them."""
    import pytest

    model, processor = tiny_factory()
    RegionGPT(model, processor).save_pretrained(tmp_path / "ckpt")
    spec = f"local:{tmp_path / 'ckpt'}"
    out = tmp_path / "gen.jsonl"
    filters = FilterConfig(min_words=1, max_repeat_ratio=1, min_class_similarity=0, dedupe=False)
    config = DatagenConfig(out=out, filters=filters, progress=False, limit=1)
    run_datagen(jsonl_items(regions_file), make_teacher(spec, TeacherOptions(max_new_tokens=3)), config)
    bfloat16 = make_teacher(spec, TeacherOptions(max_new_tokens=3, dtype="bfloat16"))
    with pytest.raises(ValueError, match=r"made with teacher '.*@float32', not '.*@bfloat16'"):
        run_datagen(
            jsonl_items(regions_file), bfloat16, DatagenConfig(out=out, filters=filters, progress=False)
        )
    # an output written before names carried the dtype says why it cannot resume, and stays as it was
    written = sorted(tmp_path.glob("gen*.jsonl"))  # the output and its side files
    for path in written:
        path.write_text(path.read_text(encoding="utf-8").replace("@float32", ""), encoding="utf-8")
    undated = [path.read_text(encoding="utf-8") for path in written]
    assert any("local:" in text for text in undated)
    float32 = make_teacher(spec, TeacherOptions(max_new_tokens=3))
    with pytest.raises(ValueError, match="before local teacher names recorded the dtype"):
        run_datagen(
            jsonl_items(regions_file), float32, DatagenConfig(out=out, filters=filters, progress=False)
        )
    assert [path.read_text(encoding="utf-8") for path in written] == undated
