"""One trial's peak GPU memory, measured on a GPU worker for ``resources.gpu: auto``."""

from __future__ import annotations

import torch

from raydm import engine, evaluation
from raydm.config import ExperimentConfig
from raydm.data import pipeline
from raydm.data.pair import DomainPair


def peak_gpu_memory(
    config: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, torch.Tensor] | None,
    iterations: int = 3,
) -> tuple[int, int]:
    """(peak bytes one trial's training reserves on this GPU, the GPU's total bytes).

    Runs the last epoch's work for a few iterations (for CGDM: with pseudo-labels, so the
    second-order gradient discrepancy is in it) and one evaluation pass of a batch.
    """
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    method, transform, loader, source, target = engine.setup(config, data, pretrained, device)
    method.train()
    eval_size = config.train.eval_batch_size
    method.start_epoch(
        config.train.epochs - 1,
        lambda: engine.prepared_inputs(data.target_train, eval_size, loader, transform),
    )
    for _ in range(iterations):
        engine.train_step(method, source, target, transform, progress=1.0)
    batches = pipeline.evaluation_batches(data.source_val, eval_size, loader)
    evaluation.outputs(method, batches, transform)
    source.close()
    target.close()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_reserved(device), torch.cuda.get_device_properties(
        device
    ).total_memory
