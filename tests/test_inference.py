"""Shared-prefix generation and scoring equal the unshared computation (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regiongpt import Box, Point, RegionGPT
from regiongpt.eval.engine import ModelEngine
from regiongpt.inference.batching import encode_samples, generate_rows, plan_prefix, score_rows
from regiongpt.inference.greedy import plain_greedy
from regiongpt.inference.prefix import expand_cache, prefill, shared_prefix_length, suffix_batch
from regiongpt.processing import EncodedSample
from regiongpt.tasks import Task, build_question

REGIONS = [
    Box(0, 0, 20, 20),
    Box(30, 10, 79, 59),
    Point(40, 30),
    Box(5, 5, 60, 40),
    Box(40, 30, 79, 59),
    Box(10, 30, 50, 59),
    Box(50, 0, 79, 20),
]
QUESTIONS = ["What is <region1>", "Tell me everything you see about the thing in <region1>", "Hi <region1>"]


def loud_engine(tiny_factory) -> RegionGPT:
    """Logits sharpened (untied, scaled head) and region tokens made loud, so answers depend on them."""
    model, processor = tiny_factory(seed=5, text_overrides={"tie_word_embeddings": False})
    with torch.no_grad():
        model.language_model.get_output_embeddings().weight.mul_(40)
        for module in model.region_projector.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(20)
    return RegionGPT(model, processor, name="tiny")


@pytest.fixture()
def engine(tiny_factory) -> RegionGPT:
    return loud_engine(tiny_factory)


def reference_generate(
    engine: RegionGPT,
    samples: list[EncodedSample],
    features,
    max_new_tokens: int,
    eos: int | list[int] | None = None,
):
    """The unshared implementation: every row in full, left-padded, through the model's generate."""
    processor = engine.processor
    batch = processor.collate(samples, padding_side="left")
    for key in ("labels", "pixel_values"):
        batch.pop(key)
    batch["region_image_index"] = torch.zeros_like(batch["region_image_index"])
    batch["image_index"] = torch.zeros(len(samples), dtype=torch.long)
    tokenizer = processor.tokenizer
    with torch.inference_mode():
        return engine.model.generate(
            **batch,
            features=features,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id if eos is None else eos,
        )


def region_final(samples: list[EncodedSample], region_token_id: int) -> list[EncodedSample]:
    """Cut each sample right after its region placeholder: the next token then depends on the region."""
    out = []
    for s in samples:
        k = s.input_ids.index(region_token_id) + 1
        out.append(
            EncodedSample(
                s.input_ids[:k],
                s.labels[:k],
                s.pixel_values,
                s.region_boxes,
                s.region_masks,
                s.region_token_index,
            )
        )
    return out


def test_shared_prefix_length_rules() -> None:
    img, reg = 100, 200
    rows = [[1, img, img, 5, 6, reg, 7], [1, img, img, 5, 6, reg, 8, 9], [1, img, img, 5, 6, reg]]
    assert shared_prefix_length(rows, img, reg) == 5  # stops before the first region placeholder
    assert shared_prefix_length(rows, img, reg, limit=3) == 3
    assert shared_prefix_length([[1, img, img, 5], [1, img, 4]], img, reg) == 0  # would split the image
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]], img, reg) == 2  # one token per row stays
    assert shared_prefix_length([[1, 2, 3]], img, reg) == 2 and shared_prefix_length([], img, reg) == 0


def test_suffix_layout_masks_pads_and_continues_positions() -> None:
    pixels, boxes, masks = torch.zeros(3, 4, 4), torch.zeros(1, 4), torch.zeros(1, 4, 4)
    samples = [
        EncodedSample([1, 2, 3, 9, 4], [-100] * 5, pixels, boxes, masks, [0]),
        EncodedSample([1, 2, 3, 9, 4, 5, 6], [-100] * 7, pixels, boxes, masks, [0]),
    ]
    left = suffix_batch(samples, 3, 0, 9, "left")
    assert left.input_ids.tolist() == [[0, 0, 9, 4], [9, 4, 5, 6]]
    assert left.attention_mask.tolist() == [[1, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    assert left.position_ids[0, 2:].tolist() == [3, 4] and left.position_ids[1].tolist() == [3, 4, 5, 6]
    assert left.region_token_index.tolist() == [0, 1]
    right = suffix_batch(samples, 3, 0, 9, "right")
    assert right.input_ids.tolist() == [[9, 4, 0, 0], [9, 4, 5, 6]]
    assert right.position_ids[0, :2].tolist() == [3, 4]


def test_expanded_cache_leaves_the_prefix_untouched(engine, rgb_image) -> None:
    image, features = engine.encode_image(rgb_image)
    sample = encode_samples(
        engine.processor, [[{"role": "user", "content": "Hi <region1>"}]], image, [[REGIONS[0]]]
    )[0]
    with torch.inference_mode():
        prefix = prefill(engine.model, sample.input_ids[:10], features)
        keys = prefix.cache.layers[0].keys.clone()
        expanded = expand_cache(prefix.cache, 3, engine.model.language_model)
        step = torch.ones(3, keys.shape[1], 2, keys.shape[-1])
        expanded.update(step, step, 0)
    assert expanded.get_seq_length() == 12 and prefix.cache.get_seq_length() == 10
    assert torch.equal(prefix.cache.layers[0].keys, keys)


@pytest.mark.parametrize("count", [1, 3, 7])
def test_shared_prefix_generation_equals_unshared_with_different_suffix_lengths(
    engine, rgb_image, count
) -> None:
    image, features = engine.encode_image(rgb_image)
    convs = [[{"role": "user", "content": QUESTIONS[i % 3]}] for i in range(count)]
    full = encode_samples(engine.processor, convs, image, [[r] for r in REGIONS[:count]], True)
    samples = region_final(full, engine.processor.region_token_id)
    expected = reference_generate(engine, samples, features, 6)
    tokenizer = engine.processor.tokenizer
    with torch.inference_mode():
        prefix = plan_prefix(engine.model, samples, features)
        got = generate_rows(
            engine.model,
            samples,
            features,
            prefix,
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    assert (prefix is None) == (count == 1)
    assert prefix is None or len(prefix) >= engine.processor.num_image_tokens
    assert torch.equal(got, expected)
    if count == 7:  # the answers really depend on the region and the question
        assert len({tuple(r) for r in expected.tolist()}) >= 5


@pytest.mark.parametrize("count", [1, 3, 7])
def test_describe_and_generate_equal_the_unshared_path(engine, rgb_image, count) -> None:
    image, features = engine.encode_image(rgb_image)
    regions = REGIONS[:count]
    question = [{"role": "user", "content": build_question(Task.CATEGORY)}]
    samples = [engine.processor.encode(question, image, [r], add_generation_prompt=True) for r in regions]
    expected = [engine.processor.decode(r) for r in reference_generate(engine, samples, features, 5)]
    assert engine.describe(rgb_image, regions, task="category", max_new_tokens=5) == expected
    assert engine.describe(rgb_image, regions, task="category", max_new_tokens=5, batch_size=2) == expected
    convs = [[{"role": "user", "content": q.replace("<region1>", "<region1>?")}] for q in QUESTIONS]
    convs = [convs[i % 3] for i in range(count)]
    samples = [
        engine.processor.encode(c, image, [r], add_generation_prompt=True) for c, r in zip(convs, regions)
    ]
    expected = [engine.processor.decode(r) for r in reference_generate(engine, samples, features, 5)]
    assert engine.generate(convs, image, [[r] for r in regions], features, max_new_tokens=5) == expected


def test_encode_samples_equals_processor_encode(engine, rgb_image) -> None:
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    fast = encode_samples(engine.processor, convs, rgb_image, [[r] for r in REGIONS[:3]], True)
    for conv, region, sample in zip(convs, REGIONS, fast):
        slow = engine.processor.encode(conv, rgb_image, [region], add_generation_prompt=True)
        assert slow.input_ids == sample.input_ids and slow.region_token_index == sample.region_token_index
        assert torch.equal(slow.region_masks, sample.region_masks) and torch.equal(
            slow.pixel_values, sample.pixel_values
        )


def test_rec_scoring_over_a_shared_prefix_equals_unbatched_scoring(engine, rgb_image) -> None:
    scorer = ModelEngine(engine)
    image, features = scorer.encode_image(rgb_image)
    conv = [
        {"from": "human", "value": build_question(Task.BRIEF, 1)},
        {"from": "gpt", "value": "a small red cup"},
    ]
    regions = [[r] for r in REGIONS]
    samples = encode_samples(engine.processor, [conv] * len(regions), image, regions)
    with torch.inference_mode():
        prefix = plan_prefix(engine.model, samples, features, for_scoring=True)
        unshared = score_rows(engine.model, samples, features, None)
    assert prefix is not None and len(prefix) > engine.processor.num_image_tokens
    batched = scorer.score([conv] * len(regions), image, regions, features=features)
    singles = [scorer.score([conv], image, [r], features=features)[0] for r in regions]
    assert batched == pytest.approx(singles, abs=1e-4) and batched == pytest.approx(unshared, abs=1e-4)
    assert int(np.argmax(batched)) == int(np.argmax(singles))
    assert len({round(s, 3) for s in batched}) == len(regions)  # each region changes the likelihood


def test_greedy_retires_finished_rows_and_equals_generate(engine, rgb_image) -> None:
    image, features = engine.encode_image(rgb_image)
    convs = [[{"role": "user", "content": QUESTIONS[i % 3]}] for i in range(7)]
    full = encode_samples(engine.processor, convs, image, [[r] for r in REGIONS], True)
    samples = region_final(full, engine.processor.region_token_id)
    first = reference_generate(engine, samples, features, 6)
    stops = [int(first[0, 1]), int(first[3, 3])]  # rows end at different steps
    expected = reference_generate(engine, samples, features, 6, eos=stops)
    seen: list[int] = []
    lm = engine.model.language_model

    def batch_size(module, args, kwargs) -> None:
        given = kwargs.get("inputs_embeds")
        seen.append((given if given is not None else kwargs["input_ids"]).shape[0])

    lm.register_forward_pre_hook(batch_size, with_kwargs=True)
    pad = engine.processor.tokenizer.pad_token_id
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": pad, "eos_token_id": stops}
    with torch.inference_mode():
        prefix = plan_prefix(engine.model, samples, features)
        got = generate_rows(engine.model, samples, features, prefix, **kwargs)
    assert torch.equal(got, expected)
    assert seen[-1] < seen[0] == 7  # the batch shrank as rows ended
    lm.generation_config.repetition_penalty = 1.5  # logits processing: generate() does the search
    assert not plain_greedy(lm, kwargs)
    expected = reference_generate(engine, samples, features, 6, eos=stops)
    with torch.inference_mode():
        assert torch.equal(generate_rows(engine.model, samples, features, prefix, **kwargs), expected)


def test_scores_equal_full_forward_log_likelihood(engine, rgb_image) -> None:
    """Scoring runs only the positions that predict an answer token; the sums still equal a
    full forward (logits at every position) of each conversation alone, answers of different
    lengths, with and without the shared prefix."""
    scorer = ModelEngine(engine)
    image, features = scorer.encode_image(rgb_image)
    answers = ["a small red cup", "cup", "the big green box on the left of the table"]
    convs = [
        [{"from": "human", "value": build_question(Task.BRIEF, 1)}, {"from": "gpt", "value": a}]
        for a in answers
    ]
    regions = [[r] for r in REGIONS[:3]]
    samples = encode_samples(engine.processor, convs, image, regions)
    expected = []
    with torch.inference_mode():
        for sample in samples:
            ids = torch.tensor([sample.input_ids])
            embeds = engine.model.embed_inputs(
                ids,
                region_boxes=sample.region_boxes,
                region_masks=sample.region_masks,
                region_image_index=torch.zeros(len(sample.region_boxes), dtype=torch.long),
                region_token_index=torch.tensor(sample.region_token_index, dtype=torch.long),
                image_index=torch.zeros(1, dtype=torch.long),
                features=features,
            )
            logp = engine.model.language_model(inputs_embeds=embeds).logits[0, :-1].float().log_softmax(-1)
            labels = torch.tensor(sample.labels[1:])
            keep = labels != -100
            expected.append(float(logp[keep].gather(1, labels[keep][:, None]).sum()))
    batched = scorer.score(convs, image, regions, features=features)
    singles = [scorer.score([c], image, [r], features=features)[0] for c, r in zip(convs, regions)]
    assert batched == pytest.approx(expected, abs=1e-4) and singles == pytest.approx(expected, abs=1e-4)
