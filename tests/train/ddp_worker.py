"""Run by torchrun in the DDP test: train a recipe, then dump this rank's trainable weights."""

from __future__ import annotations

import os
import sys

from safetensors.torch import save_file

from regiongpt.train.recipe import load_recipe
from regiongpt.train.trainer import build_from_recipe, run_recipe

if __name__ == "__main__":
    recipe = load_recipe(sys.argv[1])
    model, processor = build_from_recipe(recipe)
    run_recipe(recipe, built=(model, processor))
    rank = int(os.environ["RANK"])
    state = {k: v.detach().contiguous() for k, v in model.named_parameters() if v.requires_grad}
    save_file(state, os.path.join(sys.argv[2], f"rank{rank}.safetensors"))
