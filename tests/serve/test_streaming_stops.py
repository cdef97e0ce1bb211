"""The server's streamer: pieces join to the non-streamed answer, cut at a stop string."""

from __future__ import annotations

import pytest

from regiongpt.serve.batching import _CallbackStreamer


def _stream(tokenizer, pieces: list[str], stops: list[str]) -> list[str]:
    emitted: list[str] = []
    streamer = _CallbackStreamer(tokenizer, emitted.append, stops)
    for k, piece in enumerate(pieces):
        streamer.on_finalized_text(piece, stream_end=k == len(pieces) - 1)
    return emitted


@pytest.mark.parametrize(
    ("pieces", "stops", "joined"),
    [
        ([" a", " dog", " ", ""], [], "a dog"),
        ([" a", " dog", "##", "# Human:", " more", ""], ["###"], "a dog"),  # stop split over pieces
        ([" a", " dog", "###", " Human", ""], ["###"], "a dog"),
        ([" a", " #", "1 dog", ""], ["###"], "a #1 dog"),  # a held-back '#' that was not a stop
        ([" a", " dog", " ##", ""], ["###"], "a dog ##"),  # the end releases what was held back
    ],
)
def test_streamed_pieces_join_to_the_answer_cut_at_the_stop(tokenizer, pieces, stops, joined):
    emitted = _stream(tokenizer, pieces, stops)
    assert "".join(emitted) == joined
    assert all(piece for piece in emitted)
