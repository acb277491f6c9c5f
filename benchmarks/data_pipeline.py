"""Images per second through DANN training on the offline digits pair: raydm's pipeline against
the usual torchvision one, on the same images and the same network (both channels-last, so only
the data path differs), in one run.

    python benchmarks/data_pipeline.py --repeats 3

- raydm: uint8 tensors in memory, batches drawn by indexing, normalisation on the whole batch
  (``raydm.data.pipeline``), then ``DANN.update``.
- torchvision: the same images written once as PNG files in an ImageFolder tree, read by
  ``torchvision.datasets.ImageFolder`` with ``Grayscale``, ``ToTensor`` and ``Normalize``
  per image, batched by a ``DataLoader`` (shuffled), then the same ``DANN.update``; once with
  no worker process (the trial's one core does everything, as raydm's does) and once with one
  worker (decoding on a second core).

Both feed batches of ``--batch-size`` source and as many target images, ``--iters`` of them (62:
one epoch of the 4,000 source images). The process keeps freed memory as ``raydm`` trials do
(``memory.keep_freed_memory``), for both pipelines. Reported per repeat: images per second
(source + target) for the data path alone and for data + training step, and for the training
step alone on one batch fed again and again: no data pipeline, however fast, beats that, so its
ratio to torchvision's data + step rate bounds any pipeline's speed-up on this network and core.
The last lines are the median speed-ups of the full step and of that bound, the step's floating
point operations (torch's FlopCounterMode) and the rate they run at, against a 1024 x 1024
float32 matrix product on the same threads (how fast the core multiplies at best).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from raydm.backbones import BACKBONES
from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.data.pipeline import Loader, TrainBatches, Transform
from raydm.engine import build_method, place
from raydm.memory import keep_freed_memory

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann_printed.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=62)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default="~/.cache/raydm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    config = load_config(
        SPACE, ["params={}", f"data.root={args.root}", f"train.batch_size={args.batch_size}"]
    )
    data = load_domain_pair(config.data)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        source_dir, target_dir = Path(folder) / "source", Path(folder) / "target"
        _write_image_folder(data.source_train, source_dir)
        _write_image_folder(data.target_train, target_dir)
        speedups: dict[int, list[float]] = {workers: [] for workers in args.workers}
        bounds: dict[int, list[float]] = {workers: [] for workers in args.workers}
        step_alone: list[float] = []
        for repeat in range(args.repeats):
            ours = _raydm(config, data, cpu, args)
            step_alone.append(ours["step_alone"])
            print(
                f"repeat {repeat + 1}: raydm: data {ours['data']:.0f} img/s, "
                f"data + DANN step {ours['step']:.0f} img/s, "
                f"DANN step alone {ours['step_alone']:.0f} img/s"
            )
            for workers in args.workers:
                theirs = _torchvision(config, data, cpu, source_dir, target_dir, workers, args)
                speedups[workers].append(ours["step"] / theirs["step"])
                bounds[workers].append(ours["step_alone"] / theirs["step"])
                print(
                    f"repeat {repeat + 1}: torchvision, {workers} workers: data "
                    f"{theirs['data']:.0f} img/s, data + DANN step {theirs['step']:.0f} img/s"
                )
    for workers, ratios in speedups.items():
        print(f"speedup_data_plus_step_vs_{workers}_workers={statistics.median(ratios):.2f}")
        print(f"bound_step_alone_vs_{workers}_workers={statistics.median(bounds[workers]):.2f}")
    step_rate = statistics.median(step_alone) * ours["flops"] / (2 * args.batch_size)
    print(
        f"gflop_per_step={ours['flops'] / 1e9:.2f} step_gflops={step_rate / 1e9:.1f} "
        f"matmul_gflops={_matmul_flops_per_second() / 1e9:.1f}"
    )


def _raydm(config, data, device, args) -> dict[str, float]:
    method = place(build_method(config, data), device, images=True)
    image_input = BACKBONES.get(config.model.backbone).image_input
    transform = Transform(config.data, image_input, device, seed=0)
    loader = Loader(config.data.image_size, config.data.image_channels, 0, False)
    source = TrainBatches(data.source_train, args.batch_size, 1, loader)
    target = TrainBatches(data.target_train, args.batch_size, 2, loader)

    def batches():
        x_s, y_s, _ = source.next()
        x_t, _, index = target.next()
        return transform.train(x_s), y_s, transform.train(x_t), index

    rates = _measure(method, batches, args)
    batch = batches()
    rates["step_alone"] = _measure(method, lambda: batch, args)["step"]
    with FlopCounterMode(display=False) as counter:
        method.update(*batch, 0.5)
    rates["flops"] = counter.get_total_flops()
    return rates


def _torchvision(
    config, data, device, source_dir, target_dir, workers: int, args
) -> dict[str, float]:
    from torchvision import datasets, transforms

    method = place(build_method(config, data), device, images=True)  # same layout as raydm
    pipeline = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=1),
            transforms.ToTensor(),
            transforms.Normalize((0.5,), (0.5,)),
        ]
    )

    def endless(folder: Path):
        dataset = datasets.ImageFolder(str(folder), transform=pipeline)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        while True:
            yield from loader

    source, target = endless(source_dir), endless(target_dir)

    def batches():
        x_s, y_s = next(source)
        x_t, _ = next(target)
        return x_s, y_s, x_t, torch.arange(len(x_t))

    return _measure(method, batches, args)


def _measure(method, batches, args) -> dict[str, float]:
    images = 2 * args.batch_size * args.iters
    for _ in range(5):  # warm-up: worker start, allocator, oneDNN kernels
        batches()
    start = time.perf_counter()
    for _ in range(args.iters):
        batches()
    data_rate = images / (time.perf_counter() - start)
    method.train()
    for _ in range(3):
        method.update(*batches(), 0.5)
    start = time.perf_counter()
    for _ in range(args.iters):
        method.update(*batches(), 0.5)
    return {"data": data_rate, "step": images / (time.perf_counter() - start)}


def _matmul_flops_per_second(size: int = 1024, repeats: int = 20) -> float:
    matrix = torch.randn(size, size)
    matrix @ matrix
    start = time.perf_counter()
    for _ in range(repeats):
        matrix @ matrix
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _write_image_folder(part, folder: Path) -> None:
    for index, (image, label) in enumerate(zip(part.inputs, part.labels, strict=True)):
        path = folder / str(int(label)) / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(path)


if __name__ == "__main__":
    main()
