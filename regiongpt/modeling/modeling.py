"""The region VLM: vision tower -> region encoder -> projectors -> any HF causal LM.

Image and region features replace placeholder tokens in the LM's input embeddings: the
processor has already expanded every ``<regionK>`` tag and the image into placeholder ids
(``config.region_token_id`` / ``config.image_token_id``), so the model does one masked scatter
per modality with a hard count check. Placeholder ids may lie beyond the LM's vocabulary: they
are replaced by id 0 before the embedding lookup, so the LM's embedding matrix is never resized.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from regiongpt.modeling.cache import cache_argument
from regiongpt.modeling.configuration import RegionGPTConfig
from regiongpt.modeling.region_encoders import build_region_encoder
from regiongpt.modeling.region_inputs import RegionInputs, region_crops, view_tokens
from regiongpt.modeling.vision import VisionFeatures, build_vision_tower
from regiongpt.processing import IGNORE_INDEX

#: Component names accepted by :meth:`RegionGPTForConditionalGeneration.set_trainable`.
COMPONENTS = ("vision_tower", "region_encoder", "image_projector", "region_projector", "language_model")


def unknown_components(names: Iterable[str]) -> list[str]:
    """The names among ``names`` whose component (the part before the first dot) is not one of
    :data:`COMPONENTS`."""
    return sorted({name for name in names if name.split(".")[0] not in COMPONENTS})


def _projector(in_dim: int, out_dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def _mark_initialized(module: nn.Module) -> None:
    """Tell HF's post_init not to re-initialise a component that was passed in."""
    for sub in module.modules():
        sub._is_hf_initialized = True
    for tensor in list(module.parameters()) + list(module.buffers()):
        tensor._is_hf_initialized = True


class RegionGPTForConditionalGeneration(PreTrainedModel):
    """Components may be passed in (already loaded); missing ones are built from ``config``."""

    config_class = RegionGPTConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(
        self,
        config: RegionGPTConfig,
        vision_tower: nn.Module | None = None,
        language_model: nn.Module | None = None,
    ) -> None:
        super().__init__(config)
        self.vision_tower = vision_tower if vision_tower is not None else build_vision_tower(config)
        self.language_model = (
            language_model
            if language_model is not None
            else AutoModelForCausalLM.from_config(config.text_config)
        )
        for passed in (vision_tower, language_model):
            if passed is not None:
                _mark_initialized(passed)
        region = config.region
        self.region_encoder = build_region_encoder(region, self.vision_tower)
        width = int(config.text_config.hidden_size)
        kind = "linear" if region.type == "gpt4roi" else "mlp"
        self.region_projector = _projector(region.hidden_size, width, kind)
        token_channels = self.region_encoder.token_channels
        shared = region.type == "regiongpt" and region.connector == "shared"
        if shared and region.image_token_grid and token_channels != region.hidden_size:
            raise ValueError(
                f"a shared connector needs image tokens as wide as region features: {token_channels} != "
                f"{region.hidden_size}; set connector='separate' or hidden_size={token_channels}"
            )
        image_kind = kind if region.image_projector == "auto" else region.image_projector
        self.image_projector = (
            _projector(token_channels, width, image_kind) if region.image_token_grid and not shared else None
        )
        self.post_init()
        if config.freeze_vision_tower:
            self.vision_tower.requires_grad_(False)

    def _init_weights(self, module: nn.Module) -> None:
        """Our own layers keep PyTorch's default init; loaded components are never touched."""

    # ----------------------------------------------------------------------------- save / load
    def save_pretrained(self, save_directory, state_dict=None, **kwargs) -> None:
        """Write a regiongpt checkpoint (frozen pretrained parts left out; see ``checkpoint``)."""
        from regiongpt.modeling.checkpoint import save_checkpoint

        save_checkpoint(self, save_directory, state_dict=state_dict)

    @classmethod
    def from_pretrained(
        cls, path, *args, dtype: torch.dtype = torch.float32, progress: bool = True, **kwargs
    ):
        """Load a checkpoint directory written by :meth:`save_pretrained`."""
        from regiongpt.modeling.checkpoint import load_checkpoint

        return load_checkpoint(path, dtype=dtype, progress=progress)

    # ----------------------------------------------------------------------------- components
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def train(self, mode: bool = True) -> RegionGPTForConditionalGeneration:
        super().train(mode)
        if self.config.freeze_vision_tower:
            self.vision_tower.eval()  # frozen BatchNorm statistics stay fixed
        return self

    def set_trainable(self, components: Iterable[str]) -> None:
        """Freeze everything, then unfreeze the named components (see :data:`COMPONENTS`) or parts
        of them by dotted path (e.g. ``region_encoder.crop_embed``: a branch just added)."""
        components = list(components)
        unknown = unknown_components(components)
        if unknown:
            raise ValueError(f"unknown components {unknown}; choose from {list(COMPONENTS)}")
        parts = []
        for name in components:
            try:
                parts.append(self.get_submodule(name) if "." in name else getattr(self, name))
            except AttributeError:
                raise ValueError(f"trainable {name!r} names no part of this model") from None
        self.requires_grad_(False)
        for module in parts:
            if module is not None:
                module.requires_grad_(True)
        self.config.freeze_vision_tower = not any(n.split(".")[0] == "vision_tower" for n in components)

    # ----------------------------------------------------------------------------- encoding
    def encode_images(self, pixel_values: torch.Tensor, with_view: bool = True) -> VisionFeatures:
        """Vision features of ``(I, 3, S, S)`` preprocessed images (no grad if the tower is
        frozen), with the larger view of each image attached (``features.view``) when the region
        encoder takes one and ``with_view``: the view is encoded once per image, not per question."""
        dtype = next(self.vision_tower.parameters()).dtype
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision_tower):
            features = self.vision_tower(pixel_values.to(dtype))
        if with_view:
            features.view = self.encode_image_view(features)
        return features

    def encode_region_crops(self, features: VisionFeatures, regions: RegionInputs) -> torch.Tensor | None:
        """``(R, sum of the tower's map channels)``: each region's zoomed crop
        (``region_crop_size`` pixels, ``region_crop_context``; see :func:`region_crops`) through
        the vision tower, every map averaged; ``None`` when the region encoder takes no crops."""
        size = self.config.region.region_crop_size
        if not size or len(regions) == 0:
            return None
        if features.pixels is None:
            raise ValueError("region crops are cut from the input pixels, but these features carry none")
        crops = region_crops(features.pixels, regions, size, self.config.region.region_crop_context)
        maps = self.encode_images(crops, with_view=False).maps
        return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)

    def encode_image_view(self, features: VisionFeatures) -> torch.Tensor | None:
        """``(B, g * g, 2 * sum of the tower's map channels)``: the input resized to
        ``image_view_size`` pixels through the vision tower, pooled to the image-token grid ``g``
        (see :func:`view_tokens`); ``None`` when the region encoder takes no view."""
        size = self.config.region.image_view_size
        if not size:
            return None
        if features.pixels is None:
            raise ValueError("the image view is resized from the input pixels, but these features carry none")
        view = F.interpolate(features.pixels, size=(size, size), mode="bilinear", align_corners=False)
        return view_tokens(
            self.encode_images(view, with_view=False).maps, self.config.region.image_token_grid
        )

    def encode_regions(
        self, features: VisionFeatures, regions: RegionInputs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The region encoder's ``(R, W)`` region features (before the region projector; with
        each region's crop when the encoder takes crops) and its image tokens (or ``None``; with
        the larger view of the image when the encoder takes one)."""
        extra = {}
        crops = self.encode_region_crops(features, regions)
        if crops is not None:
            extra["crop_features"] = crops
        view = features.view if features.view is not None else self.encode_image_view(features)
        if view is not None:
            extra["view_features"] = view
        return self.region_encoder(features, regions, **extra)

    def project_image(self, tokens: torch.Tensor) -> torch.Tensor:
        projector = self.image_projector if self.image_projector is not None else self.region_projector
        return projector(tokens)

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        region_image_index: torch.Tensor | None = None,
        region_token_index: torch.Tensor | None = None,
        image_index: torch.Tensor | None = None,
        features: VisionFeatures | None = None,
    ) -> torch.Tensor:
        """LM input embeddings ``(B, L, D)`` with image and region features scattered in.

        ``pixel_values``: ``(I, 3, S, S)`` unique images; ``image_index``: ``(B,)`` image of each
        sample (default ``arange(B)``); ``region_boxes``: ``(R, 4)`` pixel xyxy in the preprocessed
        image; ``region_masks``: ``(R, S, S)``; ``region_image_index``: ``(R,)`` image of each
        region; ``region_token_index``: ``(P,)`` region filling each region placeholder, in
        row-major order of the placeholders in ``input_ids``."""
        cfg = self.config
        image_mask = input_ids == cfg.image_token_id
        region_mask = input_ids == cfg.region_token_id
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask | region_mask, 0))
        n_image, n_region = int(image_mask.sum()), int(region_mask.sum())
        if n_image == 0 and n_region == 0:
            return embeds
        if features is None:
            if pixel_values is None:
                raise ValueError("input_ids contain image/region placeholders but no pixel_values were given")
            features = self.encode_images(pixel_values)
        n_images = features.maps[0].shape[0]
        if region_boxes is None:
            region_boxes = embeds.new_zeros(0, 4)
            region_masks = embeds.new_zeros(0, 1, 1)
            region_image_index = torch.zeros(0, dtype=torch.long, device=embeds.device)
            region_token_index = torch.zeros(0, dtype=torch.long, device=embeds.device)
        regions = RegionInputs(region_boxes, region_masks, region_image_index)
        region_features, image_tokens = self.encode_regions(features, regions)
        if image_tokens is not None and n_image:
            if image_index is None:
                image_index = torch.arange(input_ids.shape[0], device=input_ids.device)
            if int(image_index.max()) >= n_images:
                raise ValueError(f"image_index refers to image {int(image_index.max())} of {n_images}")
            image_embeds = self.project_image(image_tokens)[image_index].reshape(-1, embeds.shape[-1])
            if image_embeds.shape[0] != n_image:
                raise ValueError(
                    f"image placeholder count mismatch: {n_image} placeholders in input_ids, "
                    f"{image_embeds.shape[0]} image token features"
                )
            embeds = embeds.masked_scatter(image_mask[..., None], image_embeds.to(embeds.dtype))
        elif n_image:
            raise ValueError(
                f"input_ids hold {n_image} image placeholders but this model makes no image tokens"
            )
        if n_region or len(region_token_index):
            region_embeds = self.region_projector(region_features)[region_token_index]
            if region_embeds.shape[0] != n_region:
                raise ValueError(
                    f"region placeholder count mismatch: {n_region} placeholders in input_ids, "
                    f"{region_embeds.shape[0]} region features"
                )
            embeds = embeds.masked_scatter(region_mask[..., None], region_embeds.to(embeds.dtype))
        return embeds

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        region_image_index: torch.Tensor | None = None,
        region_token_index: torch.Tensor | None = None,
        image_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_weights: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        features: VisionFeatures | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Loss (if ``labels``, -100 = ignored) and logits; arguments as in :meth:`embed_inputs`.

        ``loss_weights``: ``(B, L)`` weight of each label's token loss (default 1; see
        :func:`regiongpt.data.dataset.sample_loss_weights`)."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(
                input_ids,
                pixel_values,
                region_boxes,
                region_masks,
                region_image_index,
                region_token_index,
                image_index,
                features,
            )
        if past_key_values is None:  # transformers >= 5.24 spells it `cache`
            past_key_values = kwargs.pop("cache", None)
        if position_ids is None and attention_mask is not None and past_key_values is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if labels is not None:
            return self._supervised_loss(
                inputs_embeds, attention_mask, position_ids, labels, loss_weights=loss_weights, **kwargs
            )
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **({} if past_key_values is None else cache_argument(self.language_model, past_key_values)),
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _supervised_loss(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        labels: torch.Tensor,
        loss_weights: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Next-token loss computing LM-head logits only where labels are set (a few tokens per
        sample), which saves the ``(B, L, vocab)`` projection; returns those logits flattened."""
        hidden = self.language_model.get_decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            **kwargs,
        ).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = self.get_output_embeddings()(hidden[:, :-1][keep]).float()
        token_losses = F.cross_entropy(logits, targets[keep], reduction="none")
        if loss_weights is not None:
            if loss_weights.shape != labels.shape:
                raise ValueError(
                    f"loss_weights {tuple(loss_weights.shape)} must match labels {tuple(labels.shape)}"
                )
            token_losses = token_losses * loss_weights[:, 1:].to(token_losses)[keep]
        loss = token_losses.sum()
        count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        return CausalLMOutputWithPast(
            loss=loss / torch.as_tensor(count, device=loss.device).clamp(min=1), logits=logits
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        region_image_index: torch.Tensor | None = None,
        region_token_index: torch.Tensor | None = None,
        image_index: torch.Tensor | None = None,
        features: VisionFeatures | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """Generate continuations (new token ids only, ``(B, T)``), features computed once.

        Left-pad batched prompts; extra keyword arguments go to the LM's ``generate``."""
        embeds = self.embed_inputs(
            input_ids,
            pixel_values,
            region_boxes,
            region_masks,
            region_image_index,
            region_token_index,
            image_index,
            features,
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs
        )
