"""The Python API on a tiny random model: describe, sessions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from regiongpt import Box, Point, RegionGPT


@pytest.fixture()
def engine(tiny_factory):
    model, processor = tiny_factory(seed=5, text_overrides={"tie_word_embeddings": False})
    import torch

    with torch.no_grad():  # spread logits so greedy answers differ between regions
        model.language_model.get_output_embeddings().weight.mul_(40)
    return RegionGPT(model, processor, name="tiny")


def test_describe_answers_each_region_in_order_in_one_batch(engine, rgb_image):
    regions = [Box(0, 0, 20, 20), [30, 10, 79, 59], Point(40, 30)]
    batched = engine.describe(rgb_image, regions, task="category", max_new_tokens=5)
    singles = [engine.describe(rgb_image, [r], task="category", max_new_tokens=5)[0] for r in regions]
    assert len(batched) == 3 and all(isinstance(a, str) for a in batched)
    assert batched == singles


def test_describe_bad_inputs_name_the_region_and_value(engine, rgb_image):
    with pytest.raises(ValueError, match=r"region 2: box \[50.0, 5.0, 10.0, 20.0\] is empty or inverted"):
        engine.describe(rgb_image, [[0, 0, 5, 5], [50, 5, 10, 20]])
    with pytest.raises(ValueError, match="unknown task 'poem'"):
        engine.describe(rgb_image, [[0, 0, 5, 5]], task="poem")
    with pytest.raises(ValueError, match="image array must be HxWx3 uint8"):
        engine.describe(np.zeros((4, 4, 3), dtype=np.float32), [[0, 0, 1, 1]])
    assert engine.describe(rgb_image, []) == []
    conversation = [[{"role": "user", "content": "What is <region1>?"}]]
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0.*got nan"):
        engine.generate(conversation, rgb_image, [[Box(0, 0, 5, 5)]], temperature=float("nan"))


def test_session_keeps_history_and_numbers_regions_across_turns(engine, rgb_image):
    session = engine.session(rgb_image)
    first = session.ask("What is <region1>?", regions=[[0, 0, 20, 20]], max_new_tokens=4)
    second = session.ask("Compare <region1> with <region2>.", regions=[[30, 30, 60, 50]], max_new_tokens=4)
    assert [t["role"] for t in session.history] == ["user", "assistant", "user", "assistant"]
    assert session.history[1]["content"] == first and session.history[3]["content"] == second
    assert len(session.regions) == 2
    with pytest.raises(ValueError, match="<region3>"):
        session.ask("And <region3>?")
    assert len(session.history) == 4, "a failed question must not be stored"
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0.*got -0.5"):
        session.ask("And <region1>?", temperature=-0.5)
    assert len(session.history) == 4 and len(session.regions) == 2
    session.reset()
    assert session.history == [] and session.regions == []


def test_session_encodes_the_image_once(engine, rgb_image, monkeypatch):
    calls = []
    original = engine.model.encode_images
    monkeypatch.setattr(
        engine.model, "encode_images", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    )
    session = engine.session(rgb_image)
    session.ask("What is <region1>?", regions=[[0, 0, 20, 20]], max_new_tokens=2)
    session.ask("And now?", max_new_tokens=2)
    assert len(calls) == 1


def test_save_and_from_pretrained_round_trip(engine, rgb_image, tmp_path):
    engine.save_pretrained(tmp_path / "model")
    loaded = RegionGPT.from_pretrained(tmp_path / "model")
    regions = [[0, 0, 20, 20], [30, 10, 79, 59]]
    assert loaded.describe(rgb_image, regions, max_new_tokens=4) == engine.describe(
        rgb_image, regions, max_new_tokens=4
    )


def test_from_pretrained_loads_in_the_asked_dtype(engine, rgb_image, tmp_path):
    import torch

    engine.save_pretrained(tmp_path / "model")
    assert RegionGPT.from_pretrained(tmp_path / "model").dtype == torch.float32  # auto on CPU
    half = RegionGPT.from_pretrained(tmp_path / "model", dtype="bfloat16")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert half.dtype == torch.bfloat16
    assert len(half.describe(rgb_image, [[0, 0, 20, 20], [30, 10, 79, 59]], max_new_tokens=3)) == 2


def test_resolve_dtype_names_and_errors():
    import torch

    from regiongpt.api import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'bf17'"):
        resolve_dtype("bf17")


def test_unknown_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        RegionGPT.from_pretrained(tmp_path / "missing")


def test_a_lora_checkpoint_loads_merged_and_answers_like_the_unmerged_model(
    tiny_factory, rgb_image, tmp_path
):
    import torch

    from regiongpt.modeling.checkpoint import apply_lora

    model, processor = tiny_factory()
    apply_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    with torch.no_grad():  # LoRA B starts at zero: make the adapter change the answers
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    unmerged = RegionGPT(model.eval(), processor)
    unmerged.save_pretrained(tmp_path / "lora")
    loaded = RegionGPT.from_pretrained(tmp_path / "lora")
    assert any(getattr(m, "merged", False) for m in loaded.model.modules())  # folded into the base weights
    regions = [Box(4, 4, 40, 40), Box(20, 10, 60, 50)]
    assert loaded.describe(rgb_image, regions, max_new_tokens=6) == unmerged.describe(
        rgb_image, regions, max_new_tokens=6
    )
    loaded.save_pretrained(tmp_path / "again")  # saving a merged model keeps the adapter, not a doubled one
    again = RegionGPT.from_pretrained(tmp_path / "again")
    assert again.describe(rgb_image, regions, max_new_tokens=6) == unmerged.describe(
        rgb_image, regions, max_new_tokens=6
    )
