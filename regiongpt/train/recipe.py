"""Training recipes: YAML files validated into dataclasses (unknown keys and bad values are errors).

```yaml
model: {preset: tiny-default}          # or {init_from: CHECKPOINT_DIR}; region_config: {...} overrides
                                        # (with init_from, weights new with the override start fresh);
                                        # vision_config: {...} likewise for the tower's settings
data: {train: data/regionworld/train.jsonl, eval: data/regionworld/val.jsonl, max_eval_samples: 256}
output_dir: runs/default
seed: 0
training: {batch_size: 16, lr_scheduler: cosine, warmup_ratio: 0.03}   # defaults for every stage
stages:
  - {name: stage1, trainable: [region_encoder, region_projector, image_projector], max_steps: 600, learning_rate: 1.0e-3}
  - {name: stage2, trainable: [region_encoder, region_projector, image_projector], lora: {r: 8, target_modules: [q_proj, v_proj]}, max_steps: 200}
```
A stage may name its own ``train`` file and ``seed`` (default the recipe's ``seed``).
``trainable`` names components (``region_encoder``...) or parts of them by dotted path
(``region_encoder.crop_embed``); LoRA adapters train in every stage once present, unless the
stage sets ``lora_trainable: false`` (e.g. to fit a newly added branch alone at a high rate).
Command-line overrides are dotted ``key=value`` pairs parsed as YAML values, e.g.
``training.batch_size=4`` or ``stages.0.max_steps=10``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regiongpt.data.dataset import check_loss_average
from regiongpt.modeling.modeling import COMPONENTS, unknown_components
from regiongpt.yaml_files import load_yaml_text


@dataclass
class ModelSpec:
    preset: str | None = None
    init_from: str | None = None
    region_config: dict[str, Any] = field(default_factory=dict)
    vision_config: dict[str, Any] = field(default_factory=dict)  # e.g. more EfficientNet feature_blocks
    system_prompt: str | None = None
    pretrained_parts: dict[str, str] = field(default_factory=dict)  # override the preset's sources

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init_from is None):
            raise ValueError("model: give exactly one of 'preset' or 'init_from'")


@dataclass
class DataSpec:
    train: str = ""
    eval: str | None = None
    root: str | None = None  # image paths are relative to this (default: the JSONL's folder)
    max_train_samples: int | None = None
    max_eval_samples: int | None = 256
    skip_invalid: bool = False
    augment: list[str] = field(default_factory=list)  # hflip / resize / shift; none by default

    def __post_init__(self) -> None:
        unknown = sorted(set(self.augment) - {"hflip", "resize", "shift"})
        if unknown:
            raise ValueError(
                f"data.augment: unknown augmentations {unknown}; choose from hflip, resize, shift"
            )
        if not self.train:
            raise ValueError("data.train must name a JSONL file")


@dataclass
class TrainingSpec:
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    num_epochs: float = 1.0
    max_steps: int = -1
    bf16: str | bool = "auto"  # auto: on where the hardware supports it
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    eval_steps: int | None = None
    dataloader_num_workers: int = 0
    deepspeed: str | None = None  # a DeepSpeed JSON config file
    fsdp: str | None = None  # e.g. "full_shard auto_wrap"
    fsdp_config: str | None = None
    max_grad_norm: float = 1.0
    loss_average: str = "token"  # token: every answer token weighs the same; sample: every sample

    def __post_init__(self) -> None:
        check_loss_average(self.loss_average)
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_scheduler not in ("cosine", "linear", "constant", "constant_with_warmup"):
            raise ValueError(
                f"lr_scheduler must be cosine/linear/constant/constant_with_warmup, got {self.lr_scheduler!r}"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.bf16 not in ("auto", True, False):
            raise ValueError(f"bf16 must be auto, true or false, got {self.bf16!r}")


@dataclass
class StageSpec:
    name: str
    trainable: list[str]
    lora: dict[str, Any] | None = None
    train: str | None = None  # this stage's training JSONL (default: data.train)
    seed: int | None = None  # this stage's seed: data order, augmentation, dropout, new adapters
    lora_trainable: bool = True  # false: the LoRA adapters stay frozen in this stage
    overrides: TrainingSpec | None = None  # filled from the stage's training keys

    def __post_init__(self) -> None:
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32
        ):
            raise ValueError(
                f"stage {self.name!r}: seed must be an integer in [0, 2**32), got {self.seed!r:.40}"
            )
        unknown = unknown_components(self.trainable)
        if unknown:
            raise ValueError(
                f"stage {self.name!r}: unknown components {unknown}; choose from {list(COMPONENTS)} "
                "(or a part of one by dotted path, e.g. region_encoder.crop_embed)"
            )
        if not isinstance(self.lora_trainable, bool):
            raise ValueError(
                f"stage {self.name!r}: lora_trainable must be true or false, got {self.lora_trainable!r:.40}"
            )
        if not self.trainable and (not self.lora or not self.lora_trainable):
            raise ValueError(f"stage {self.name!r} trains nothing")


@dataclass
class Recipe:
    model: ModelSpec
    data: DataSpec
    stages: list[StageSpec]
    output_dir: str = "runs/regiongpt"
    seed: int = 0
    training: TrainingSpec = field(default_factory=TrainingSpec)

    def stage_seed(self, stage: StageSpec) -> int:
        """``stage``'s seed (data order, augmentation, dropout): its own, else the recipe's."""
        return self.seed if stage.seed is None else stage.seed


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {values!r:.60}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = tree
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_recipe(values: dict[str, Any], overrides: list[str] = ()) -> Recipe:
    """Validate a recipe mapping after applying ``key=value`` overrides."""
    values = yaml.safe_load(yaml.safe_dump(values))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. training.batch_size=4)")
        key, raw = item.split("=", 1)
        try:
            _set_dotted(values, key.strip(), yaml.safe_load(raw))
        except yaml.YAMLError:
            raise ValueError(f"override {item!r}: the value is not valid YAML") from None
        except (KeyError, IndexError, ValueError, TypeError):
            raise ValueError(f"override {item!r}: no such key path") from None
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"recipe: unknown keys {unknown}; known: {sorted(known)}")
    training = _build(TrainingSpec, values.get("training", {}), "training")
    base = dataclasses.asdict(training)
    stages = []
    for index, stage in enumerate(values.get("stages") or []):
        if not isinstance(stage, dict):
            raise ValueError(f"stages[{index}] must be a mapping")
        own = {
            k: stage[k]
            for k in ("name", "trainable", "lora", "train", "seed", "lora_trainable")
            if k in stage
        }
        tweaks = {k: v for k, v in stage.items() if k not in own}
        merged = _build(TrainingSpec, {**base, **tweaks}, f"stages[{index}]")
        stages.append(
            _build(
                StageSpec,
                {"name": f"stage{index + 1}", "trainable": [], **own, "overrides": merged},
                f"stages[{index}]",
            )
        )
    if not stages:
        raise ValueError("recipe: 'stages' must list at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    return Recipe(
        model=_build(ModelSpec, values.get("model", {}), "model"),
        data=_build(DataSpec, values.get("data", {}), "data"),
        stages=stages,
        output_dir=str(values.get("output_dir", "runs/regiongpt")),
        seed=int(values.get("seed", 0)),
        training=training,
    )


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recipe file not found: {path}")
    try:
        values = load_yaml_text(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    try:
        return parse_recipe(values, overrides)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
