"""The disk a search's kept checkpoints take, per checkpoint, trial and search.

    python benchmarks/checkpoint_disk.py

For each shipped space on its own pair, one real epoch of one iteration (so the optimisers'
momentum buffers exist, as in every later checkpoint) gives the bytes of a checkpoint's state,
saved as the trainable saves it; the float16 target softmax grows by one epoch per checkpoint.
A trial keeps its best epoch and its latest by default (search.keep_checkpoints: 1), every
epoch with ``all``.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from raydm import engine
from raydm.config import load_config
from raydm.data.pair import load_domain_pair

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def checkpoint_bytes(space: str) -> tuple[int, int, object]:
    """(state bytes without the softmax, softmax bytes per epoch, the config)."""
    config = load_config(SPACES / space, ["params={}"])
    one_step = config.with_values({"train.epochs": 1, "train.iters_per_epoch": 1})
    data = load_domain_pair(config.data)
    captured = {}

    def keep(epoch, metrics, state):
        captured.update(state)

    engine.fit(one_step, data, on_epoch=keep)
    softmax = captured.pop(engine.TARGET_SOFTMAX)
    buffer = io.BytesIO()
    torch.save(captured, buffer)
    per_epoch = io.BytesIO()
    torch.save(softmax, per_epoch)
    return buffer.tell(), per_epoch.tell(), config


def main() -> None:
    print(
        "| space | checkpoint (state + 1 epoch of softmax) | trial, keep 1 (best + latest, at "
        "most) | trial, keep all | search, keep 1 (at most) | search, keep all |"
    )
    print("|---|---|---|---|---|---|")
    for space in ("source_only.yaml", "dann.yaml", "cgdm.yaml"):
        state, softmax, config = checkpoint_bytes(space)
        epochs, trials = config.train.epochs, config.search.num_samples
        # The checkpoint of epoch e holds the softmax of epochs 1..e.
        at = [state + softmax * e for e in range(1, epochs + 1)]
        keep_one = at[-1] + at[-2] if epochs > 1 else at[-1]  # at most: latest + the one before
        keep_all = sum(at)
        mib = 2**20
        print(
            f"| {space} | {at[0] / mib:.2f} MiB | {keep_one / mib:.1f} MiB | "
            f"{keep_all / mib:.1f} MiB | {trials * keep_one / mib:.0f} MiB | "
            f"{trials * keep_all / mib:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
