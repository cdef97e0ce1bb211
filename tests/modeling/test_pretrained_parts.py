"""The real offline pretrained parts: EfficientNet-Lite0 and SmolLM2-135M-Instruct."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from regiongpt.modeling.checkpoint import load_vision_tower
from regiongpt.modeling.configuration import preset_config
from regiongpt.processing import ImagePreprocessor

pytestmark = pytest.mark.real

CAT_CLASSES = set(range(281, 286))  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


def _chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def test_efficientnet_lite0_sees_a_cat_with_the_configured_normalisation():
    config = preset_config("tiny-default")
    tower = load_vision_tower(config, "efficientnet-lite0").eval()
    vision = config.vision_config
    pixels, _ = ImagePreprocessor(224, vision.image_mean, vision.image_std, "resize")(_chelsea())
    with torch.no_grad():
        probs = tower.classify(pixels[None]).softmax(-1)[0]
    assert set(probs.topk(5).indices.tolist()) & CAT_CLASSES
    assert probs.argmax().item() in CAT_CLASSES and probs.max() > 0.5
    # The wrong normalisation (raw [0, 1] input) must do clearly worse: the test settles the choice.
    raw, _ = ImagePreprocessor(224, [0.0] * 3, [1.0] * 3, "resize")(_chelsea())
    with torch.no_grad():
        raw_probs = tower.classify(raw[None]).softmax(-1)[0]
    assert raw_probs[list(CAT_CLASSES)].sum() < probs[list(CAT_CLASSES)].sum()


def test_efficientnet_feature_maps_have_strides_8_16_32():
    config = preset_config("tiny-default")
    tower = load_vision_tower(config, "efficientnet-lite0").eval()
    with torch.no_grad():
        features = tower(torch.zeros(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in features.maps] == [(40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert features.strides == [8.0, 16.0, 32.0]


def test_smollm2_knows_the_capital_of_france(smollm2):
    model, tokenizer = smollm2
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_smollm2_template_without_system_message_inserts_a_long_default(smollm2):
    """The trap the processor avoids by always passing its own short system prompt."""
    _, tokenizer = smollm2
    bare = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    short = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], tokenize=False
    )
    assert len(tokenizer(bare)["input_ids"]) - len(tokenizer(short)["input_ids"]) >= 10
    assert tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_pretrained_weight_cache_is_reused(tmp_path):
    from regiongpt.modeling.pretrained import efficientnet_lite0_weights

    first = efficientnet_lite0_weights()
    second = efficientnet_lite0_weights()
    key = next(iter(first))
    assert torch.equal(first[key], second[key])
    assert np.isfinite(first[key].numpy()).all()


def test_silencing_load_bars_restores_huggingface_hub_settings():
    """Quiet loads switch transformers' bars off and on again without resetting a per-group
    setting of huggingface_hub's bars made elsewhere."""
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    from regiongpt.modeling.pretrained import transformers_progress_bars

    hub.enable_progress_bars()
    hub.disable_progress_bars("huggingface_hub.lfs_upload")
    try:
        with transformers_progress_bars(False):
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.is_progress_bar_enabled()
        assert hub.are_progress_bars_disabled("huggingface_hub.lfs_upload")
        assert not hub.are_progress_bars_disabled("huggingface_hub.http_get")
    finally:
        hub.enable_progress_bars()


def test_efficientnet_finer_blocks_join_after_the_configured_maps():
    config = preset_config("tiny-default")
    config.override_vision(
        {
            "feature_blocks": [4, 10, 15, 2],
            "feature_channels": [40, 112, 320, 24],
            "feature_strides": [8, 16, 32, 4],
        }
    )
    tower = load_vision_tower(config, "efficientnet-lite0").eval()
    with torch.no_grad():
        features = tower(torch.zeros(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in features.maps] == [
        (40, 28, 28),
        (112, 14, 14),
        (320, 7, 7),
        (24, 56, 56),
    ]
    assert tuple(features.tokens.shape) == (1, 7, 7, 320)  # still the deepest block
    assert tower.token_channels == 320
    with pytest.raises(ValueError, match="unknown vision tower settings: \\['feature_block'\\]"):
        config.override_vision({"feature_block": [2]})
    config.override_vision({"feature_channels": [40, 112]})
    with pytest.raises(ValueError, match="one entry per map"):
        load_vision_tower(config, "efficientnet-lite0")
