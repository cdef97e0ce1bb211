"""The model with tiny random CLIP/SigLIP + Llama configs through both region encoders."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from regiongpt.data.dataset import sample_loss_weights
from regiongpt.modeling.configuration import preset_config
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration

CONV = [
    {"from": "human", "value": "What is <region1> next to <region2>?"},
    {"from": "gpt", "value": "a red cat"},
]
BOXES = [[0, 0, 20, 20], [10, 10, 50, 40]]


@pytest.mark.parametrize("tower", ["clip", "siglip"])
@pytest.mark.parametrize("encoder", ["regiongpt", "gpt4roi"])
def test_loss_and_gradients_reach_trainable_parts_only(tiny_factory, rgb_image, encoder, tower):
    model, processor = tiny_factory(encoder=encoder, tower=tower)
    model.set_trainable(["region_encoder", "region_projector", "image_projector"])
    model.train()
    batch = processor([CONV, CONV], [rgb_image, rgb_image], [BOXES, BOXES[::-1]])
    out = model(**batch)
    assert torch.isfinite(out.loss)
    assert out.logits.shape[0] == int((batch["labels"][:, 1:] != -100).sum())
    out.loss.backward()
    for name, param in model.named_parameters():
        if name.startswith(("region_encoder", "region_projector", "image_projector")):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_sparse_loss_equals_the_language_models_own_loss(tiny_factory, rgb_image):
    model, processor = tiny_factory()
    batch = processor([CONV, CONV[:1] + [{"from": "gpt", "value": "no"}]], [rgb_image] * 2, [BOXES, BOXES])
    with torch.no_grad():
        ours = model(**batch).loss
        embeds = model.embed_inputs(
            batch["input_ids"],
            batch["pixel_values"],
            batch["region_boxes"],
            batch["region_masks"],
            batch["region_image_index"],
            batch["region_token_index"],
        )
        reference = model.language_model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_sample_loss_weights_make_the_loss_a_mean_over_samples(tiny_factory, rgb_image):
    model, processor = tiny_factory()
    short = CONV[:1] + [{"from": "gpt", "value": "no"}]
    convs, images, boxes = [CONV, short], [rgb_image] * 2, [BOXES, BOXES]
    batch = processor(convs, images, boxes)
    counts = (batch["labels"][:, 1:] != -100).sum(dim=1)
    assert counts[0] > counts[1]  # the caption has more answer tokens than "no"
    with torch.no_grad():
        each = torch.stack([model(**processor([c], [i], [b])).loss for c, i, b in zip(convs, images, boxes)])
        per_token = model(**batch).loss
        per_sample = model(**batch, loss_weights=sample_loss_weights(batch["labels"])).loss
    torch.testing.assert_close(per_sample, each.mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(per_token, (each * counts).sum() / counts.sum(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"loss_weights \(2, 3\) must match labels"):
        model(**batch, loss_weights=torch.ones(2, 3))


def test_frozen_tower_stays_in_eval_mode(tiny_factory):
    model, _ = tiny_factory()
    model.train()
    assert not model.vision_tower.training
    assert model.region_encoder.training


def test_placeholder_count_mismatch_is_a_hard_error(tiny_factory, rgb_image):
    model, processor = tiny_factory()
    batch = processor([CONV], [rgb_image], [BOXES])
    batch["region_token_index"] = batch["region_token_index"][:1]
    with pytest.raises(ValueError, match="region placeholder count mismatch: 2 placeholders.*1 region"):
        model(**batch)


def test_embedding_matrix_is_never_resized(tiny_factory):
    model, processor = tiny_factory()
    vocab = model.get_input_embeddings().weight.shape[0]
    assert processor.region_token_id >= vocab and processor.image_token_id >= vocab
    assert model.get_input_embeddings().weight.shape[0] == vocab


def _sharp(model):
    """Spread the LM's logits so that greedy decoding has no near-ties."""
    with torch.no_grad():
        model.language_model.get_output_embeddings().weight.mul_(40)
    return model


def test_batched_generation_equals_single_sample_generation(tiny_factory, rgb_image):
    model, processor = tiny_factory(seed=3, text_overrides={"tie_word_embeddings": False})
    _sharp(model)
    questions = [
        (
            [{"role": "user", "content": "Describe <region1> and <region2> and <region3>."}],
            [[0, 0, 20, 20], [5, 5, 60, 50], [40, 10, 79, 59]],
        ),
        ([{"role": "user", "content": "What is in the image?"}], []),
        ([{"role": "user", "content": "What is <region1>?"}], [[10, 10, 30, 30]]),
    ]
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    singles = []
    for conv, regions in questions:
        batch = processor([conv], [rgb_image], [regions], add_generation_prompt=True)
        batch.pop("labels")
        singles.append(model.generate(**batch, **kwargs)[0].tolist())
    batch = processor(
        [q[0] for q in questions],
        [rgb_image] * 3,
        [q[1] for q in questions],
        add_generation_prompt=True,
        padding_side="left",
    )
    batch.pop("labels")
    batched = model.generate(**batch, **kwargs).tolist()
    assert len({tuple(s) for s in singles}) > 1, "degenerate model: all answers equal"
    assert batched == singles


def test_save_and_load_give_identical_logits(tiny_factory, rgb_image, tmp_path):
    model, processor = tiny_factory(encoder="gpt4roi")
    batch = processor([CONV], [rgb_image], [BOXES])
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path / "ckpt")
    loaded = RegionGPTForConditionalGeneration.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        after = loaded(**batch).logits
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary files left behind"


def test_region_overrides_extend_a_checkpoint_and_refuse_what_does_not_fit(tiny_factory, rgb_image, tmp_path):
    from safetensors.torch import load_file, save_file

    from regiongpt.modeling.checkpoint import load_checkpoint

    model, processor = tiny_factory()
    batch = processor([CONV], [rgb_image], [BOXES])
    model.save_pretrained(tmp_path / "ckpt")
    extended = load_checkpoint(tmp_path / "ckpt", region_overrides={"box_embedding": True})
    assert extended.config.region.box_embedding and extended.region_encoder.box_embed is not None
    with torch.no_grad():  # the new embedding starts at zero: same answers as before
        torch.testing.assert_close(extended(**batch).logits, model(**batch).logits)
    with pytest.raises(ValueError, match=r"weights do not fit the model with \{'hidden_size': 16\}"):
        load_checkpoint(tmp_path / "ckpt", region_overrides={"hidden_size": 16})
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    lost = next(k for k in state if k.startswith("region_encoder."))
    save_file({k: v for k, v in state.items() if k != lost}, str(weights))
    with pytest.raises(
        ValueError, match=f"lacks weights: \\['{lost}'\\]"
    ):  # an override excuses only its own new weights
        load_checkpoint(tmp_path / "ckpt", region_overrides={"box_embedding": True})


def test_vision_and_region_overrides_add_a_finer_map_to_a_trained_efficientnet_model(
    tiny_factory, rgb_image, tmp_path
):
    from regiongpt.modeling.checkpoint import load_checkpoint

    model, processor = tiny_factory(tower="efficientnet")
    batch = processor([CONV], [rgb_image], [BOXES])
    model.save_pretrained(tmp_path / "ckpt")
    finer = {
        "feature_blocks": [4, 10, 15, 2],
        "feature_channels": [40, 112, 320, 24],
        "feature_strides": [8, 16, 32, 4],
    }
    extended = load_checkpoint(
        tmp_path / "ckpt", vision_overrides=finer, region_overrides={"fine_levels": [3]}
    )
    assert extended.config.vision_config.feature_blocks == [4, 10, 15, 2]
    assert [p.shape[1] for p in extended.region_encoder.fine_projs.parameters() if p.dim() == 4] == [24]
    with torch.no_grad():  # the new projection starts at zero: same answers as before
        torch.testing.assert_close(extended(**batch).logits, model(**batch).logits)
    extended.save_pretrained(tmp_path / "extended")  # the tower settings travel with the checkpoint
    assert load_checkpoint(tmp_path / "extended").config.vision_config.feature_blocks == [4, 10, 15, 2]


@pytest.mark.parametrize("tower", ["efficientnet", "clip"])
def test_region_crops_go_through_the_tower_and_train_the_crop_embedding(tiny_factory, rgb_image, tower):
    from regiongpt.modeling.region_inputs import RegionInputs, region_crops

    model, processor = tiny_factory(tower=tower)
    size = model.vision_tower.image_size if tower == "clip" else 48
    cropping, _ = tiny_factory(tower=tower, region_crop_size=size, region_crop_context=2.0)
    cropping.load_state_dict(model.state_dict(), strict=False)
    batch = processor([CONV, CONV], [rgb_image, rgb_image], [BOXES, BOXES[::-1]])
    with torch.no_grad():  # zero-initialised: the same answers as without crops
        torch.testing.assert_close(cropping(**batch).logits, model(**batch).logits)
        features = cropping.encode_images(batch["pixel_values"])
        regions = RegionInputs(batch["region_boxes"], batch["region_masks"], batch["region_image_index"])
        expected = cropping.vision_tower(region_crops(batch["pixel_values"], regions, size, 2.0))
        torch.testing.assert_close(
            cropping.encode_region_crops(features.select([1, 0]).select([1, 0]), regions),
            torch.cat([m.mean(dim=(2, 3)) for m in expected.maps], dim=1),
        )
    cropping.set_trainable(["region_encoder"])
    cropping.train()
    cropping(**batch).loss.backward()
    assert cropping.region_encoder.crop_embed[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in cropping.vision_tower.parameters())  # frozen tower


def test_the_image_view_goes_through_the_tower_and_trains_the_view_embedding(tiny_factory, rgb_image):
    from regiongpt.modeling.region_inputs import view_tokens

    model, processor = tiny_factory(tower="efficientnet")
    viewing, _ = tiny_factory(tower="efficientnet", image_view_size=64)
    viewing.load_state_dict(model.state_dict(), strict=False)
    batch = processor([CONV, CONV], [rgb_image, rgb_image[::-1].copy()], [BOXES, BOXES[::-1]])
    grid = viewing.config.region.image_token_grid
    with torch.no_grad():  # zero-initialised: the same answers as without the view
        torch.testing.assert_close(viewing(**batch).logits, model(**batch).logits)
        features = viewing.encode_images(batch["pixel_values"])
        view = viewing.encode_image_view(features)
        larger = torch.nn.functional.interpolate(batch["pixel_values"], size=(64, 64), mode="bilinear")
        torch.testing.assert_close(view, view_tokens(viewing.vision_tower(larger).maps, grid))
    assert view.shape == (2, grid * grid, 2 * sum(viewing.vision_tower.channels))
    torch.testing.assert_close(features.view, view)  # attached once, at encoding
    torch.testing.assert_close(features.select([1, 1]).view, view[[1, 1]])
    names = ("region_boxes", "region_masks", "region_image_index", "region_token_index")
    regions = {name: batch[name] for name in names}
    with torch.no_grad():  # a trained view branch: the view now moves the image tokens
        torch.nn.init.normal_(viewing.region_encoder.view_embed[-1].weight)
    tower_calls = []
    hook = viewing.vision_tower.register_forward_hook(lambda *_: tower_calls.append(1))
    with torch.no_grad():  # questions on encoded features run the tower no more
        reused = viewing.embed_inputs(batch["input_ids"], features=features, **regions)
        swapped = dataclasses.replace(features, view=features.view.flip(0))
        other = viewing.embed_inputs(batch["input_ids"], features=swapped, **regions)
    hook.remove()
    assert tower_calls == []
    with torch.no_grad():
        fresh = viewing.embed_inputs(batch["input_ids"], batch["pixel_values"], **regions)
    torch.testing.assert_close(reused, fresh)
    assert not torch.allclose(reused, other)  # the attached view is the one used
    viewing.set_trainable(["region_encoder.view_embed"])
    viewing.train()
    viewing(**batch).loss.backward()
    assert viewing.region_encoder.view_embed[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in viewing.vision_tower.parameters())  # frozen tower
    with pytest.raises(ValueError, match="image_view_size 64: this vision tower takes"):
        tiny_factory(tower="clip", image_view_size=64)


def test_a_stored_language_model_loads_from_the_checkpoint_and_a_lost_weight_is_an_error(
    tiny_factory, tmp_path
):
    from safetensors.torch import load_file, save_file

    from regiongpt.modeling.checkpoint import apply_lora, load_checkpoint, stored_language_model

    model, _ = tiny_factory()
    apply_lora(model, {"r": 2, "target_modules": ["q_proj"]})
    model.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    built = stored_language_model(model.config, state, torch.float32)  # base names, LoRA left out
    assert not any("lora_" in name for name in built.state_dict())
    ids = torch.arange(3, 11)[None]
    with torch.no_grad():  # LoRA B starts at zero: the base model alone answers the same
        torch.testing.assert_close(built(input_ids=ids).logits, model.language_model(input_ids=ids).logits)
    lost = next(k for k in state if k.startswith("language_model.") and "layers.1.mlp" in k)
    save_file({k: v for k, v in state.items() if k != lost}, str(weights))
    with pytest.raises(ValueError, match=f"lacks weights: \\['{lost}'\\]"):
        load_checkpoint(tmp_path / "ckpt")


def test_progress_false_silences_transformers_loading_bar_and_restores_it(tiny_factory, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    from regiongpt.modeling.checkpoint import load_checkpoint

    model, _ = tiny_factory()  # random LM: stored in the checkpoint, loaded by from_pretrained
    model.save_pretrained(tmp_path / "ckpt")
    capfd.readouterr()
    load_checkpoint(tmp_path / "ckpt", progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the process-wide switch is back as it was
    load_checkpoint(tmp_path / "ckpt")
    assert "Loading weights" in capfd.readouterr().err


@pytest.mark.parametrize("merged", [False, True])
def test_extend_lora_keeps_the_trained_adapters_and_the_outputs(tiny_factory, merged):
    from regiongpt.modeling.checkpoint import apply_lora, extend_lora

    model, _ = tiny_factory()
    lora = {"r": 2, "lora_alpha": 4, "lora_dropout": 0.0}
    apply_lora(model, {**lora, "target_modules": ["q_proj", "v_proj"]})
    with torch.no_grad():  # B starts at zero: make the adapters matter
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    trained = {k: v.clone() for k, v in model.language_model.state_dict().items() if "lora_" in k}
    ids = torch.arange(3, 11)[None]
    with torch.no_grad():
        before = model.language_model(input_ids=ids).logits
    if merged:  # as RegionGPT.from_pretrained leaves it
        model.language_model.merge_adapter()
    extend_lora(model, {**lora, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    state = model.language_model.state_dict()
    assert any("k_proj.lora_A" in k for k in state) and model.config.lora["target_modules"][1] == "k_proj"
    for key, tensor in trained.items():
        torch.testing.assert_close(state[key], tensor, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model.language_model(input_ids=ids).logits, before)
    with pytest.raises(ValueError, match="cannot continue the model's LoRA"):
        extend_lora(model, {**lora, "target_modules": ["q_proj"]})


@pytest.mark.parametrize("name", ["gpt4roi", "regiongpt"])
def test_7b_presets_build_on_meta_device(name):
    config = preset_config(name)
    with torch.device("meta"):
        model = RegionGPTForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    assert 6.5e9 < total < 8e9
    if name == "gpt4roi":  # the paper's flatten-linear: 1024 x (1024*14*14), about 205M parameters
        assert tuple(model.region_encoder.reduce.weight.shape) == (1024, 200704)
        assert config.num_image_tokens == 256


def test_gradient_checkpointing_gives_the_same_gradients(tiny_factory, rgb_image):
    model, processor = tiny_factory()
    batch = processor([CONV], [rgb_image], [BOXES])
    model.train()
    model(**batch).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(**batch).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)
