"""Serving: an OpenAI-compatible HTTP server (:mod:`.app`), a web UI (:mod:`.ui`) and a terminal
chat (:mod:`.chat`); :mod:`.commands` holds the ``serve``, ``ui`` and ``chat`` CLI commands.
Heavy dependencies (FastAPI, Gradio) load only when those modules are imported."""
