"""Recipe validation: unknown keys and bad values are errors; shipped recipes parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regiongpt.train.recipe import load_recipe, parse_recipe
from regiongpt.yaml_files import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "model": {"preset": "tiny-default"},
    "data": {"train": "x.jsonl"},
    "stages": [{"name": "s1", "trainable": ["region_encoder"], "max_steps": 3}],
}


def test_stage_keys_override_training_defaults():
    recipe = parse_recipe({**BASE, "training": {"batch_size": 4, "learning_rate": 1e-4}})
    stage = recipe.stages[0]
    assert stage.overrides.max_steps == 3 and stage.overrides.batch_size == 4
    assert recipe.training.max_steps == -1


def test_a_stage_seed_overrides_the_recipes_for_that_stage_only():
    stages = [
        {"name": "a", "trainable": ["region_encoder"]},
        {"name": "b", "trainable": ["region_encoder"], "seed": 2},
    ]
    recipe = parse_recipe({**BASE, "seed": 5, "stages": stages})
    assert [recipe.stage_seed(stage) for stage in recipe.stages] == [5, 2]
    for bad in ("1", -1, 2**32, True):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\), got"):
            parse_recipe({**BASE, "stages": [{"name": "a", "trainable": ["region_encoder"], "seed": bad}]})
    assert parse_recipe(BASE, ["stages.0.seed=3"]).stages[0].seed == 3


def test_dotted_overrides_reach_nested_keys():
    recipe = parse_recipe(BASE, ["training.batch_size=2", "stages.0.max_steps=7", "model.preset=gpt4roi"])
    assert recipe.stages[0].overrides.batch_size == 2 and recipe.stages[0].overrides.max_steps == 7
    assert recipe.model.preset == "gpt4roi"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, r"unknown keys \['colour'\]"),
        ({"training": {"batch_size": 0}}, "batch_size"),
        ({"training": {"lr_scheduler": "zigzag"}}, "lr_scheduler"),
        ({"training": {"loss_average": "answer"}}, "loss_average must be one of token/sample, got 'answer'"),
        ({"training": {"learning_rat": 1}}, r"training: unknown keys \['learning_rat'\]"),
        ({"stages": [{"trainable": ["vision"]}]}, r"unknown components \['vision'\]"),
        ({"stages": [{"trainable": ["vision.blocks"]}]}, r"unknown components \['vision.blocks'\]"),
        ({"stages": [{"trainable": ["region_encoder"], "lora_trainable": "no"}]}, "lora_trainable"),
        ({"stages": [{"lora": {"r": 4}, "lora_trainable": False}]}, "trains nothing"),
        ({"stages": []}, "at least one stage"),
        ({"model": {"preset": "a", "init_from": "b"}}, "exactly one of"),
        ({"data": {}}, "data.train"),
    ],
)
def test_bad_recipes_are_rejected_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        parse_recipe({**BASE, **change})


def test_bad_override_is_rejected():
    with pytest.raises(ValueError, match="key=value"):
        parse_recipe(BASE, ["training.batch_size"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model: {preset: tiny-default}\nmodel: {preset: gpt4roi}\n",
            r"key 'model' appears twice .*lines 1 and 2",
        ),
        (
            "training:\n  batch_size: 4\n  lr_scheduler: cosine\n  batch_size: 8\n",
            r"key 'batch_size' .*lines 2 and 4",
        ),
    ],
)
def test_a_recipe_file_with_a_repeated_key_is_refused_with_its_lines(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text + "data: {train: x.jsonl}\nstages: [{name: s1, trainable: [region_encoder]}]\n")
    with pytest.raises(ValueError, match=rf"recipe\.yaml: not valid YAML at line \d+, column \d+: {message}"):
        load_recipe(path)


def _training_recipes() -> list[str]:
    """Every shipped YAML with a ``stages`` key (the others are data-mix recipes)."""
    recipes = ROOT / "recipes"
    return sorted(
        path.relative_to(recipes).as_posix()
        for path in recipes.rglob("*.yaml")
        if "stages" in (load_yaml_text(path.read_text()) or {})
    )


def test_training_recipes_are_found():
    found = _training_recipes()
    for name in ("default.yaml", "gpt4roi.yaml", "regiongpt.yaml", "experiments/category_yes_no_stage.yaml"):
        assert name in found


@pytest.mark.parametrize("name", _training_recipes())
def test_shipped_recipes_parse(name):
    recipe = load_recipe(ROOT / "recipes" / name)
    assert recipe.stages


def test_paper_recipes_follow_the_papers():
    gpt4roi = load_recipe(ROOT / "recipes" / "gpt4roi.yaml")
    assert [s.overrides.learning_rate for s in gpt4roi.stages] == [2e-5, 2e-5]
    assert all(s.overrides.num_epochs == 2 and s.overrides.lr_scheduler == "cosine" for s in gpt4roi.stages)
    assert gpt4roi.stages[0].trainable == ["region_encoder", "region_projector"]
    assert "vision_tower" not in gpt4roi.stages[1].trainable
    assert gpt4roi.training.fsdp and gpt4roi.training.gradient_checkpointing


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json"])
def test_deepspeed_configs_match_the_schema_we_rely_on(name):
    """DeepSpeed is not installed in CI: check the keys and value types its config schema takes."""
    config = json.loads((ROOT / "configs" / "deepspeed" / name).read_text())
    allowed = {
        "bf16",
        "fp16",
        "zero_optimization",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "optimizer",
        "scheduler",
    }
    assert set(config) <= allowed
    zero = config["zero_optimization"]
    assert zero["stage"] == int(name[4])
    zero_keys = {
        "stage",
        "overlap_comm",
        "contiguous_gradients",
        "reduce_bucket_size",
        "allgather_bucket_size",
        "stage3_prefetch_bucket_size",
        "stage3_param_persistence_threshold",
        "stage3_gather_16bit_weights_on_model_save",
        "offload_optimizer",
        "offload_param",
    }
    assert set(zero) <= zero_keys
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert config[key] == "auto" or isinstance(config[key], int)
    assert config["bf16"]["enabled"] in ("auto", True, False)
