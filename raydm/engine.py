"""Framework-free training: ``fit`` runs one configuration epoch by epoch.

No Ray here: the Tune trainable and ``raydm train`` both call ``fit`` and decide what to do with
each epoch's metrics and state (report and checkpoint, or print).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

import torch

from raydm import memory
from raydm import metrics as m
from raydm.backbones import BACKBONES
from raydm.config import ExperimentConfig
from raydm.data import pipeline
from raydm.data.pair import DomainPair
from raydm.data.pipeline import Loader, TrainBatches, Transform
from raydm.data.samples import seed_for
from raydm.evaluation import Evaluation
from raydm.methods import METHODS
from raydm.methods.base import Method
from raydm.networks import load_pretrained, pretrained_state

# Key of the epoch's softmax on the validation target subset in the epoch state (float16).
TARGET_SOFTMAX = "target_softmax"
CLASS_NAMES, INPUT_SHAPE = "class_names", "input_shape"  # keys of the epoch state, too

EpochCallback = Callable[[int, dict[str, float], dict[str, Any]], None]


class Diverged(RuntimeError):
    """A loss became NaN or infinite: the trial cannot recover, so it is not retried."""


def learning_rate(progress: float, lr: float, schedule: str, alpha: float, beta: float) -> float:
    """mu_p = mu_0 / (1 + alpha p)^beta (DANN, Ganin & Lempitsky 2015), or mu_0 if constant."""
    if schedule == "constant":
        return lr
    return lr / (1.0 + alpha * progress) ** beta


def use_threads_of(config: ExperimentConfig) -> None:
    """Run torch's CPU ops on ``resources.cpu`` threads, as a search's trial does. A CPU op
    splits its sums by thread, so another count changes the floats, and adversarial training
    carries the change on: a rerun on the trial's count repeats the trial's numbers."""
    torch.set_num_threads(max(1, int(config.resources.cpu)))


def choose_device(wants_gpu: bool) -> torch.device:
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def platform(config: ExperimentConfig) -> str:
    """What a run of ``config`` here gives floats by, beyond the config: torch's version, the
    processor's kernels (torch picks AVX2 or AVX-512 ones by what the CPU offers) and thread
    count, or the GPU and cuDNN. A trial and ``raydm train`` repeat each other to the bit only
    where these are the same."""
    device = choose_device(config.resources.wants_gpu)
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, cuDNN {torch.backends.cudnn.version()}"
    else:
        threads = torch.get_num_threads()
        kernels = torch.backends.cpu.get_cpu_capability()
        where = f"{kernels} kernels, {threads} thread{'s' if threads > 1 else ''}"
    return f"torch {torch.__version__}, {device.type} ({where})"


def build_method(
    config: ExperimentConfig, data: DomainPair, pretrained: dict[str, torch.Tensor] | None = None
) -> Method:
    return build_model(config, data.num_classes, data.input_shape, pretrained)


def build_model(
    config: ExperimentConfig,
    num_classes: int,
    input_shape: tuple[int, ...],
    pretrained: dict[str, torch.Tensor] | None = None,
) -> Method:
    """The method's network for samples of ``input_shape`` (as stored: before any crop)."""
    backbone = BACKBONES.get(config.model.backbone).build(
        config.model.backbone_args, pipeline.model_input_shape(input_shape, config.data)
    )
    load_pretrained(backbone, pretrained)
    method_class = METHODS.get(config.method).load()
    return method_class(config.method_args, backbone, num_classes, config.model, config.train)


def place(method: Method, device: torch.device, images: bool) -> Method:
    """Move ``method`` to ``device``; convolutions get the channels-last layout, which oneDNN
    (CPU) and cuDNN run faster (a LeNet forward+backward: 66 -> 42 ms here)."""
    method = method.to(device)
    return method.to(memory_format=torch.channels_last) if images else method


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """What dropout and other random draws continue from: the CPU generator's state, and on a
    GPU that device's generator's too (its draws come from it)."""
    state = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def fit_seeds(
    config: ExperimentConfig,
    data: DomainPair,
    seeds: int,
    pretrained: dict[str, torch.Tensor],
    echo: Callable[[str], None],
) -> list[dict[str, float]]:
    """Train ``config`` with train.seed, +1, ... (``seeds`` runs), echoing each epoch's losses
    and validators; each run's last metrics (for ``summarize_runs``)."""
    runs = []
    for offset in range(seeds):
        seed = config.train.seed + offset
        prefix = f"seed {seed} " if seeds > 1 else ""

        def show(epoch: int, metrics: dict[str, float], state, prefix=prefix) -> None:
            shown = "  ".join(
                f"{k}={v:.4f}"
                for k, v in metrics.items()
                if k.startswith(("val/", "oracle/", "train/loss"))
            )
            echo(f"{prefix}epoch {epoch}/{config.train.epochs}  {shown}")

        run_config = config.with_values({"train.seed": seed})
        runs.append(fit(run_config, data, on_epoch=show, pretrained=pretrained))
    return runs


def summarize_runs(runs: list[dict[str, float]]) -> dict[str, str]:
    """Each final metric of one or more runs of a config: the value, or "mean ± sd" (sample
    standard deviation) over several seeds."""
    summary = {}
    for key in runs[0]:
        values = [float(run[key]) for run in runs]
        if len(values) == 1:
            summary[key] = f"{values[0]:.4f}"
        else:
            summary[key] = f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
    return summary


def pseudo_label_stats(pseudo_labels: torch.Tensor, data: DomainPair) -> dict[str, float]:
    """Pseudo-label accuracy against the target labels (an oracle figure: reported, never
    used) and the share of target samples given each class."""
    labelled = pseudo_labels >= 0
    truth = data.target_train.labels
    correct = (pseudo_labels[labelled].cpu() == truth[labelled.cpu()]).float()
    stats = {
        m.PSEUDO_LABEL_ACC: correct.mean().item() if labelled.any() else 0.0,
        m.PSEUDO_LABEL_COVERAGE: labelled.float().mean().item(),
    }
    counts = torch.bincount(pseudo_labels[labelled].cpu(), minlength=data.num_classes)
    for name, count in zip(data.class_names, counts.tolist(), strict=True):
        stats[f"{m.PSEUDO_LABEL_SHARE}/{name}"] = count / len(pseudo_labels)
    return stats


def iterations_per_epoch(config: ExperimentConfig, data: DomainPair) -> int:
    """``train.iters_per_epoch``, or one pass over the source training split."""
    train = config.train
    return train.iters_per_epoch or max(1, len(data.source_train) // train.batch_size)


def fit(
    config: ExperimentConfig,
    data: DomainPair,
    on_epoch: EpochCallback | None = None,
    resume_from: dict[str, Any] | None = None,
    pretrained: dict[str, torch.Tensor] | None = None,
    costly_epochs: Collection[int] | None = None,
) -> dict[str, float]:
    """Train ``config`` on ``data``; return the last epoch's metrics.

    ``on_epoch(epoch, metrics, state)`` runs after every epoch; ``state`` is what
    ``resume_from`` needs to continue exactly where that epoch ended. It holds the live
    tensors, not copies: save or copy it before returning. ``pretrained`` is the backbone's
    starting weights when the caller has loaded them already (a search loads them once).
    The costly validators (``m.COSTLY_VALIDATORS``) are computed at the epochs (counted from 1)
    of ``costly_epochs``, or at every epoch if it is None.
    """
    if config.params:
        raise ValueError(f"fit needs a fixed config; still searched: {', '.join(config.params)}")
    train = config.train
    memory.keep_freed_memory()
    if pretrained is None:
        pretrained = pretrained_state(config.model.backbone, config.model.backbone_args)
    torch.manual_seed(seed_for(train.seed, "init"))
    device = choose_device(config.resources.wants_gpu)
    if device.type == "cuda":
        # A reused trial process still holds its last trial's cached blocks: hand them back to
        # the trials sharing the GPU, and measure this trial's peak from here.
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    method, transform, loader, source, target = setup(config, data, pretrained, device)
    iterations = iterations_per_epoch(config, data)
    total = iterations * train.epochs
    first_epoch = 0
    if resume_from is not None:
        method.load_state_dict(resume_from["model"])
        for optimizer, state in zip(method.optimizers(), resume_from["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        source.stream.load_state_dict(resume_from["source_stream"])
        target.stream.load_state_dict(resume_from["target_stream"])
        transform.generator.set_state(resume_from["augment_rng"])
        restore_rng_state(resume_from, device)
        first_epoch = resume_from["epoch"]

    def target_batches():
        return prepared_inputs(data.target_train, train.eval_batch_size, loader, transform)

    evaluation = Evaluation(data, train)
    epoch_metrics: dict[str, float] = {}
    method.train()
    for epoch in range(first_epoch, train.epochs):
        sums: dict[str, float] = defaultdict(float)
        started = time.perf_counter()
        pseudo_labels = method.start_epoch(epoch, target_batches)
        for step in range(iterations):
            progress = (epoch * iterations + step) / total
            lr = learning_rate(progress, train.lr, train.lr_schedule, train.lr_alpha, train.lr_beta)
            for optimizer in method.optimizers():
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
            stats = train_step(method, source, target, transform, progress)
            broken = sorted(name for name, value in stats.items() if not math.isfinite(value))
            if broken:
                raise Diverged(
                    f"{broken[0]} became {stats[broken[0]]} at epoch {epoch + 1}, iteration "
                    f"{step + 1} (lr {lr:.3g}): lower train.lr or the adaptation weights"
                )
            for name, value in stats.items():
                sums[name] += value
        epoch_metrics = {name: total_value / iterations for name, total_value in sums.items()}
        epoch_metrics[m.TRAIN_LR] = lr
        trained = time.perf_counter()
        epoch_metrics[m.TIME_TRAIN] = trained - started
        if pseudo_labels is not None:
            epoch_metrics.update(pseudo_label_stats(pseudo_labels, data))
        costly = costly_epochs is None or epoch + 1 in costly_epochs
        scores, target_probabilities = evaluation.run(method, transform, loader, costly)
        epoch_metrics.update(scores)
        epoch_metrics.update({m.EPOCH: epoch + 1, m.EPOCHS_PLANNED: train.epochs})
        epoch_metrics[m.TIME_EVAL] = time.perf_counter() - trained
        if device.type == "cuda":
            epoch_metrics[m.GPU_PEAK_MEMORY] = torch.cuda.max_memory_reserved(device) / 2**30
        if on_epoch is not None:
            state = {
                "model": method.state_dict(),
                "optimizers": [opt.state_dict() for opt in method.optimizers()],
                "source_stream": source.stream.state_dict(),
                "target_stream": target.stream.state_dict(),
                "augment_rng": transform.generator.get_state(),
                **rng_state(device),
                "epoch": epoch + 1,
                # What building the model again needs (raydm predict and export).
                CLASS_NAMES: list(data.class_names),
                INPUT_SHAPE: list(data.input_shape),
                # For EnsV, which scores every (trial, epoch) of a search after it ends.
                TARGET_SOFTMAX: target_probabilities.half(),
            }
            on_epoch(epoch + 1, epoch_metrics, state)
    source.close()
    target.close()
    return epoch_metrics


def train_step(
    method: Method,
    source: TrainBatches,
    target: TrainBatches,
    transform: Transform,
    progress: float,
) -> dict[str, float]:
    source_inputs, source_labels, _ = source.next()
    target_inputs, _, target_index = target.next()  # target labels never reach the method
    return method.update(
        transform.train(source_inputs),
        source_labels.to(transform.device),
        transform.train(target_inputs),
        target_index.to(transform.device),
        progress,
    )


def setup(
    config: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, torch.Tensor] | None,
    device: torch.device,
) -> tuple[Method, Transform, Loader, TrainBatches, TrainBatches]:
    train = config.train
    method = place(build_method(config, data, pretrained), device, len(data.input_shape) == 3)
    image_input = BACKBONES.get(config.model.backbone).image_input
    transform = Transform(config.data, image_input, device, seed_for(train.seed, "augment"))
    # DataLoader workers only where images stream from disk; in-memory batches are indexed.
    workers = max(1, int(config.resources.cpu)) if data.streamed else 0
    loader = Loader(
        config.data.image_size, config.data.image_channels, workers, device.type == "cuda"
    )
    source_seed, target_seed = seed_for(train.seed, "source"), seed_for(train.seed, "target")
    source = TrainBatches(data.source_train, train.batch_size, source_seed, loader)
    target = TrainBatches(data.target_train, train.batch_size, target_seed, loader)
    return method, transform, loader, source, target


def prepared_inputs(part, batch_size: int, loader: Loader, transform: Transform):
    for inputs, _ in pipeline.evaluation_batches(part, batch_size, loader):
        yield transform.evaluation(inputs)
