"""A tiny-model server in its own process, for the load test (its RSS is then the server's own).

``python -m tests.reliability.load_server PORT_FILE``: binds 127.0.0.1 on a free port, writes the
port to PORT_FILE, serves until killed (the parent polls ``/health``)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: The load test's limits: small body and token caps so malformed requests are cheap to make.
SETTINGS = {
    "max_body_bytes": 200_000,
    "max_regions": 4,
    "max_tokens_limit": 4,
    "max_image_pixels": 256 * 256,
    "batch_wait_s": 0.005,
    "max_batch_size": 8,
    "request_timeout_s": 60.0,
}


def main(port_file: str) -> None:
    import torch
    import uvicorn
    from transformers import AutoTokenizer

    from regiongpt.api import RegionGPT
    from regiongpt.modeling.pretrained import smollm2_dir
    from regiongpt.serve.app import create_app
    from regiongpt.serve.schemas import ServerSettings
    from tests.tiny import make_tiny

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    model, processor = make_tiny(tokenizer, seed=1, text_overrides={"tie_word_embeddings": False})
    app = create_app(RegionGPT(model, processor, name="tiny"), "tiny", ServerSettings(**SETTINGS))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    Path(port_file).write_text(str(sock.getsockname()[1]))  # the parent polls /health on it
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1])
