"""Run a recipe on the HF Trainer (accelerate underneath: one CPU up to DeepSpeed/FSDP clusters).

Each stage freezes/unfreezes components, optionally adds LoRA adapters to the LM (peft), and
trains with its own schedule; ``OUTPUT_DIR/<stage>/final`` holds the stage's checkpoint and
``OUTPUT_DIR/final`` the last one. ``resume=True`` skips finished stages and continues an
unfinished one from its newest ``checkpoint-*`` (optimizer, scheduler and RNG states included).
Launch on several processes with ``accelerate launch -m regiongpt.cli train ...`` or ``torchrun``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

from regiongpt.data.dataset import Collator, RegionDataset
from regiongpt.modeling.checkpoint import (
    apply_lora,
    build_model,
    extend_lora,
    load_checkpoint,
    save_checkpoint,
)
from regiongpt.modeling.configuration import preset_config
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration
from regiongpt.modeling.pretrained import load_tokenizer
from regiongpt.processing import RegionGPTProcessor
from regiongpt.train.recipe import Recipe, StageSpec, TrainingSpec

logger = logging.getLogger(__name__)


def build_from_recipe(recipe: Recipe) -> tuple[RegionGPTForConditionalGeneration, RegionGPTProcessor]:
    """The recipe's model (seeded with ``recipe.seed``, so fresh layers start the same) and processor."""
    set_seed(recipe.seed)
    spec = recipe.model
    if spec.init_from is not None:
        model = load_checkpoint(
            spec.init_from, region_overrides=spec.region_config, vision_overrides=spec.vision_config
        )
        tokenizer = AutoTokenizer.from_pretrained(spec.init_from)
    else:
        config = preset_config(spec.preset)
        config.override_vision(spec.vision_config)
        config.override_region(spec.region_config)
        if spec.system_prompt is not None:
            config.system_prompt = spec.system_prompt
        config.pretrained_parts = {**config.pretrained_parts, **spec.pretrained_parts}
        source = config.pretrained_parts.get("language_model")
        if source is None:
            raise ValueError(f"preset {spec.preset!r} names no pretrained language model; use init_from")
        tokenizer = load_tokenizer(source)
        model = build_model(config)
    processor = RegionGPTProcessor.from_config(model.config, tokenizer)
    return model, processor


def _bf16(value: str | bool) -> bool:
    if value == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(value)


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or cut off by a kill during the write
        return False
    return True


def last_complete_checkpoint(stage_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` whose save finished (transformers writes trainer_state.json last)."""
    complete = [
        p
        for p in stage_dir.glob("checkpoint-*")
        if re.fullmatch(r"checkpoint-[0-9]+", p.name) and _readable_json(p / "trainer_state.json")
    ]
    return str(max(complete, key=lambda p: int(p.name.split("-", 1)[1]))) if complete else None


#: TrainingArguments' name for activation (gradient) checkpointing: transformers 5.x renamed it and
#: warns on the old name, which older 5.x releases still need.
CHECKPOINTING_ARGUMENT = (
    "activation_checkpointing"
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}
    else "gradient_checkpointing"
)


def training_arguments(spec: TrainingSpec, output_dir: Path, seed: int, has_eval: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        lr_scheduler_type=spec.lr_scheduler,
        warmup_steps=spec.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        num_train_epochs=spec.num_epochs,
        max_steps=spec.max_steps,
        bf16=_bf16(spec.bf16),
        **{CHECKPOINTING_ARGUMENT: spec.gradient_checkpointing},
        logging_steps=spec.logging_steps,
        save_steps=spec.save_steps,
        save_total_limit=spec.save_total_limit,
        eval_strategy="steps" if has_eval and spec.eval_steps else "no",
        eval_steps=spec.eval_steps,
        dataloader_num_workers=spec.dataloader_num_workers,
        deepspeed=spec.deepspeed,
        fsdp=spec.fsdp or "",
        fsdp_config=spec.fsdp_config,
        max_grad_norm=spec.max_grad_norm,
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        label_names=["labels"],  # only labels: any other batch key (loss_weights) is a model input
        report_to=[],
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
    )


def _prepare_stage(model: RegionGPTForConditionalGeneration, stage: StageSpec) -> None:
    if stage.lora and not model.config.lora:
        apply_lora(model, stage.lora)
    elif stage.lora and stage.lora != model.config.lora:
        extend_lora(model, stage.lora)
    model.set_trainable(stage.trainable)
    if model.config.lora and stage.lora_trainable:  # adapters train whenever present, unless told
        for name, param in model.language_model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)


def run_recipe(
    recipe: Recipe,
    resume: bool = False,
    built: tuple[RegionGPTForConditionalGeneration, RegionGPTProcessor] | None = None,
) -> Path:
    """Train every stage of ``recipe``; returns the final checkpoint directory.

    ``built``: a model and processor made by :func:`build_from_recipe` (default: made here)."""
    model, processor = built if built is not None else build_from_recipe(recipe)
    out = Path(recipe.output_dir)
    data = recipe.data
    train_set = RegionDataset(
        data.train, processor, data.root, data.max_train_samples, data.augment, recipe.seed, data.skip_invalid
    )
    eval_set = (
        RegionDataset(data.eval, processor, data.root, data.max_eval_samples, skip_invalid=data.skip_invalid)
        if recipe.data.eval
        else None
    )
    stage_sets = {  # every stage's data opened up front: a missing file fails before any training
        stage.name: RegionDataset(stage.train or data.train, processor, data.root, data.max_train_samples,
                                  data.augment, recipe.stage_seed(stage), data.skip_invalid)
        if stage.train or stage.seed is not None else train_set
        for stage in recipe.stages
    }  # fmt: skip
    final = out / "final"
    for stage in recipe.stages:
        stage_dir = out / stage.name
        done = stage_dir / "final"
        if stage.seed is not None:  # the stage's own seed also draws its new adapters
            set_seed(stage.seed)
        _prepare_stage(model, stage)
        if resume and (done / "config.json").is_file():
            logger.info("stage %s already finished; loading %s", stage.name, done)
            state = load_checkpoint(done).state_dict()
            model.load_state_dict(state, strict=False)
            continue
        spec = stage.overrides or recipe.training
        args = training_arguments(spec, stage_dir, recipe.stage_seed(stage), eval_set is not None)
        if spec.gradient_checkpointing:
            model.language_model.config.use_cache = False
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=stage_sets[stage.name],
            eval_dataset=eval_set,
            data_collator=Collator(processor, spec.loss_average),
            processing_class=processor.tokenizer,
        )
        checkpoint = last_complete_checkpoint(stage_dir) if resume else None
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if trainer.is_world_process_zero():
            save_checkpoint(model, done, tokenizer=processor.tokenizer)
            (stage_dir / "train_result.json").write_text(
                json.dumps(
                    {"stage": stage.name, "metrics": result.metrics, "training": dataclasses.asdict(spec)},
                    indent=2,
                )
            )
        trainer.accelerator.wait_for_everyone()
    model.config.use_cache = True
    if PartialState().is_main_process:
        save_checkpoint(model, final, tokenizer=processor.tokenizer)
    return final
