"""The trainer on tiny models and tiny data: single process, resume, and 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from regiongpt.api import RegionGPT
from regiongpt.data.dataset import Collator, RegionDataset
from regiongpt.data.format import write_jsonl
from regiongpt.train.recipe import parse_recipe
from regiongpt.train.trainer import build_from_recipe, run_recipe


@pytest.fixture()
def tiny_setup(tiny_factory, tmp_path, rgb_image):
    """A saved tiny model and 4 samples whose replies have the same number of tokens."""
    from PIL import Image

    model, processor = tiny_factory()
    RegionGPT(model, processor).save_pretrained(tmp_path / "init")
    Image.fromarray(rgb_image).save(tmp_path / "img.png")
    records = [
        {
            "id": str(i),
            "image": "img.png",
            "regions": [{"box": [i, i, 20 + 3 * i, 30]}],
            "conversations": [
                {"from": "human", "value": f"Is <region1> number {i}?"},
                {"from": "gpt", "value": "yes" if i % 2 else "no"},
            ],
        }
        for i in range(4)
    ]
    write_jsonl(tmp_path / "train.jsonl", records)
    return tmp_path


def _recipe(root: Path, out: str, batch_size: int, steps: int = 2, **training) -> dict:
    return {
        "model": {"init_from": str(root / "init")},
        "data": {"train": str(root / "train.jsonl")},
        "output_dir": str(root / out),
        "seed": 1,
        "training": {
            "batch_size": batch_size,
            "learning_rate": 1e-2,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
            "logging_steps": 1,
            "save_steps": 1,
            **training,
        },
        "stages": [{"name": "s1", "trainable": ["region_encoder", "region_projector"], "max_steps": steps}],
    }


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_recipe_tower_and_encoder_overrides_extend_an_init_from_model(tiny_factory, tiny_setup):
    model, processor = tiny_factory(tower="efficientnet")
    RegionGPT(model, processor).save_pretrained(tiny_setup / "efficientnet")
    values = _recipe(tiny_setup, "fine", batch_size=4, steps=1)
    values["model"] = {
        "init_from": str(tiny_setup / "efficientnet"),
        "vision_config": {"feature_blocks": [4, 10, 15, 2], "feature_channels": [40, 112, 320, 24]},
        "region_config": {"fine_levels": [3]},
    }
    with pytest.raises(ValueError, match="one entry per map"):  # strides not given for block 2
        run_recipe(parse_recipe(values))
    values["model"]["vision_config"]["feature_strides"] = [8, 16, 32, 4]
    after = _weights(run_recipe(parse_recipe(values)))
    assert after["region_encoder.fine_projs.0.weight"].abs().sum() > 0  # started at zero, trained


def test_single_process_training_moves_trainable_weights_only(tiny_setup):
    final = run_recipe(parse_recipe(_recipe(tiny_setup, "run", batch_size=4)))
    before, after = _weights(tiny_setup / "init"), _weights(final)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and all(k.startswith(("region_encoder", "region_projector")) for k in moved)
    assert any(k.startswith("region_encoder") for k in moved)
    assert (tiny_setup / "run" / "s1" / "final" / "config.json").is_file()
    RegionGPT.from_pretrained(final)  # loads with no edits


def test_a_later_stage_widens_lora_keeping_the_trained_adapters(tiny_setup):
    recipe = _recipe(tiny_setup, "run", batch_size=4)
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    recipe["stages"] = [
        {
            "name": "qv",
            "trainable": ["region_projector"],
            "lora": {**lora, "target_modules": ["q_proj", "v_proj"]},
            "max_steps": 2,
        },
        {
            "name": "qkvo",
            "trainable": ["region_projector"],
            "lora": {**lora, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "max_steps": 2,
        },
    ]
    final = run_recipe(parse_recipe(recipe))
    first, second = _weights(tiny_setup / "run" / "qv" / "final"), _weights(final)
    assert any("k_proj.lora_" in k for k in second) and not any("k_proj.lora_" in k for k in first)
    assert {k for k in first if "lora_" in k} < {k for k in second if "lora_" in k}
    assert any(not torch.equal(first[k], second[k]) for k in first if "q_proj.lora_B" in k)  # trained on
    assert any(second[k].abs().sum() > 0 for k in second if "k_proj.lora_B" in k)  # new ones trained too
    assert RegionGPT.from_pretrained(final).model.config.lora["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    ]


def test_a_stage_cannot_change_lora_rank(tiny_setup):
    recipe = _recipe(tiny_setup, "run", batch_size=4, steps=1)
    recipe["stages"] = [
        {
            "name": "r4",
            "trainable": ["region_projector"],
            "lora": {"r": 4, "target_modules": ["q_proj"]},
            "max_steps": 1,
        },
        {
            "name": "r8",
            "trainable": ["region_projector"],
            "lora": {"r": 8, "target_modules": ["q_proj"]},
            "max_steps": 1,
        },
    ]
    with pytest.raises(ValueError, match="'r': 8.*cannot continue the model's LoRA"):
        run_recipe(parse_recipe(recipe))


def test_resume_skips_finished_stages_and_continues_checkpoints(tiny_setup):
    recipe = parse_recipe(_recipe(tiny_setup, "run", batch_size=4, steps=2))
    first = _weights(run_recipe(recipe))
    again = _weights(run_recipe(recipe, resume=True))
    for key in first:
        torch.testing.assert_close(first[key], again[key])


def test_a_stage_seed_draws_its_new_adapters(tiny_setup):
    """The same stage seed gives the same weights; another seed gives other new-adapter values."""

    def run(out: str, seed: int) -> dict[str, torch.Tensor]:
        recipe = _recipe(tiny_setup, out, batch_size=2, steps=1)
        lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj"]}
        recipe["stages"] = [
            {"name": "s1", "trainable": ["region_projector"], "lora": lora, "seed": seed, "max_steps": 1}
        ]
        return _weights(run_recipe(parse_recipe(recipe)))

    first, same, other = run("a", 5), run("b", 5), run("c", 7)
    adapters = [k for k in first if "lora_A" in k]
    assert adapters
    for key in first:
        torch.testing.assert_close(first[key], same[key])
    assert all(not torch.equal(first[k], other[k]) for k in adapters)


def test_a_stage_can_train_one_part_with_the_adapters_frozen(tiny_setup):
    """``trainable: [region_encoder.refine]`` with ``lora_trainable: false``: nothing else moves."""
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj"]}
    recipe = _recipe(tiny_setup, "adapters", batch_size=2, steps=1)
    recipe["stages"] = [{"name": "s1", "trainable": ["region_projector"], "lora": lora, "max_steps": 1}]
    before = _weights(run_recipe(parse_recipe(recipe)))
    recipe = _recipe(tiny_setup, "part", batch_size=2, steps=2)
    recipe["model"] = {"init_from": str(tiny_setup / "adapters" / "final")}
    part = "region_encoder.refine"
    recipe["stages"] = [{"name": "s2", "trainable": [part], "lora_trainable": False, "max_steps": 2}]
    after = _weights(run_recipe(parse_recipe(recipe)))
    moved = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert moved and all(k.startswith(part + ".") for k in moved), moved
    recipe["stages"][0]["trainable"] = ["region_encoder.wheels"]
    with pytest.raises(ValueError, match="trainable 'region_encoder.wheels' names no part of this model"):
        run_recipe(parse_recipe(recipe))


def test_sample_loss_average_reaches_the_loss(tiny_setup):
    """The first step's loss is the mean over samples of each one's mean token loss (token
    averaging: the mean over all answer tokens); replies of one length give the same step."""
    records = [json.loads(line) for line in (tiny_setup / "train.jsonl").read_text().splitlines()]
    records[0]["conversations"][1]["value"] = "no, it is a much longer reply than the others"
    write_jsonl(tiny_setup / "mixed.jsonl", records)
    runs, losses = {}, {}
    for name in ("train", "mixed"):
        for average in ("token", "sample"):
            recipe = _recipe(tiny_setup, f"{name}-{average}", batch_size=4, steps=1, loss_average=average)
            recipe["data"]["train"] = str(tiny_setup / f"{name}.jsonl")
            runs[name, average] = _weights(run_recipe(parse_recipe(recipe)))
            result = json.loads((tiny_setup / f"{name}-{average}" / "s1" / "train_result.json").read_text())
            losses[name, average] = result["metrics"]["train_loss"]
    model, processor = build_from_recipe(parse_recipe(_recipe(tiny_setup, "unused", batch_size=4)))
    data = RegionDataset(tiny_setup / "mixed.jsonl", processor)
    with torch.no_grad():
        batches = [Collator(processor)([data[i]]) for i in range(len(data))]
        each = torch.tensor([float(model(**batch).loss) for batch in batches])
    tokens = torch.tensor([float((batch["labels"][:, 1:] != -100).sum()) for batch in batches])
    assert tokens[0] > tokens[1]
    assert losses["mixed", "sample"] == pytest.approx(float(each.mean()), rel=1e-4)
    assert losses["mixed", "token"] == pytest.approx(float((each * tokens).sum() / tokens.sum()), rel=1e-4)
    assert losses["train", "sample"] == pytest.approx(losses["train", "token"], rel=1e-5)
    for key in (k for k in runs["train", "token"] if k.startswith("region_projector")):
        torch.testing.assert_close(
            runs["train", "sample"][key], runs["train", "token"][key], rtol=1e-4, atol=1e-6
        )


@pytest.mark.slow
def test_two_process_ddp_matches_single_process_on_the_same_global_batch(tiny_setup):
    single = _weights(run_recipe(parse_recipe(_recipe(tiny_setup, "single", batch_size=4))))
    recipe = tiny_setup / "ddp.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tiny_setup, "ddp", batch_size=2)))
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": root}
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
        str(recipe),
        str(tiny_setup),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = _weights(tiny_setup / "ddp" / "final")
    init = _weights(tiny_setup / "init")
    assert any(not torch.equal(init[k], ddp[k]) for k in ddp), "weights did not move"
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5)
    rank0, rank1 = (load_file(str(tiny_setup / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and rank0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks differ on {key}"
    states = json.loads((tiny_setup / "ddp" / "s1" / "train_result.json").read_text())
    assert states["training"]["batch_size"] == 2


@pytest.mark.parametrize("name", ["gpt4roi.yaml", "regiongpt.yaml"])
def test_paper_recipes_dry_run_with_tiny_configs_and_data(tiny_setup, name):
    """Each paper recipe's stages (components, LoRA/full, data per stage) run on a tiny model.

    Distributed engines (FSDP, DeepSpeed) and bf16 are switched off: they need GPUs."""
    root = Path(__file__).resolve().parents[2]
    values = yaml.safe_load((root / "recipes" / name).read_text())
    values["model"] = {"init_from": str(tiny_setup / "init")}
    values["data"] = {"train": str(tiny_setup / "train.jsonl")}
    values["output_dir"] = str(tiny_setup / name)
    values["training"].update(
        fsdp=None,
        fsdp_config=None,
        deepspeed=None,
        bf16=False,
        batch_size=2,
        gradient_accumulation_steps=1,
        save_steps=10,
        warmup_ratio=0.0,
    )
    for stage in values["stages"]:
        stage["max_steps"] = 1
        stage.pop("train", None)
    final = run_recipe(parse_recipe(values))
    stages = [s["name"] for s in values["stages"]]
    assert all((tiny_setup / name / s / "final" / "config.json").is_file() for s in stages)
    before, after = _weights(tiny_setup / "init"), _weights(final)
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert "region_encoder" in moved
    assert ("language_model" in moved) == any("language_model" in s["trainable"] for s in values["stages"])


@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_arguments_use_the_current_checkpointing_name(tmp_path, checkpointing):
    """No deprecation warning from TrainingArguments, and the recipe's setting is what it holds."""
    import warnings

    from regiongpt.train.recipe import TrainingSpec
    from regiongpt.train.trainer import training_arguments

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = training_arguments(TrainingSpec(gradient_checkpointing=checkpointing), tmp_path, 0, False)
    assert args.gradient_checkpointing is checkpointing
