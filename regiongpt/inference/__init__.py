"""Inference helpers: shared-prefix key/value caching and batched generation/scoring on it.

See :mod:`regiongpt.inference.prefix` (the cache layout) and :mod:`regiongpt.inference.batching`
(encode, generate, score). :class:`regiongpt.api.RegionGPT` and the evaluation engine use them.
"""
