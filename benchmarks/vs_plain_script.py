"""raydm against the plain script a user would write instead, on the same folders of images.

    python benchmarks/vs_plain_script.py --repeats 3

The data: MNIST -> MNIST-M as the offline pair builds them (2,500 + 2,500 images), written once
as folders of PNGs, so both arms read image files as a user's would be. ``--images N`` writes N
per domain instead, to see how the cost grows: a seeded sample of them below 2,500; above it,
the 2,500 again as copies shifted by up to 2 pixels (the offline pair has no more real digits).

    python benchmarks/vs_plain_script.py --repeats 1 --trials 48
    python benchmarks/vs_plain_script.py --repeats 1 --images 10000

``--device cuda`` (for a GPU machine) runs the plain script's tensors and net on the GPU, one
trial at a time as its loop does, and raydm's trials at ``resources.gpu: 0.25``, four to a GPU.

- plain: one process with 2 threads; an Optuna study (TPE after 4 random trials, Optuna's
  SuccessiveHalvingPruner) over the JMLR DANN of ``plain_dann.py`` (28 x 28, no batch norm),
  the images decoded once into tensors; each trial reports its source validation accuracy
  after every epoch, and the pick is the (trial, epoch) where it is best.
- raydm: ``raydm tune --space search_spaces/dann.yaml`` on ``folder:`` domains with the same
  trials and epochs; with ``--variant KEY=VALUE ...``, a third arm runs it with those overrides
  too (``search.scheduler.reduction_factor=4``: the plain script's pruning).

Both search the shipped space's four params over their ranges. The arms alternate within each
repeat, each in a process of its own; the table gives the median over repeats of the wall time
(process start to exit), the epochs run, and the oracle target accuracy of the pick and of the
best point (each arm's target test split, 30% of the target).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
STARTUP = 4  # random trials before TPE


@dataclass(frozen=True)
class Budget:
    trials: int = 12
    epochs: int = 8
    iterations: int = 62  # per epoch


def write_folders(root: Path, images: int | None = None) -> tuple[Path, Path]:
    """The offline pair's images as class folders of PNGs under ``root``: all of them, or
    ``images`` per domain (see the module's docstring)."""
    import numpy as np
    import torch
    from PIL import Image

    from raydm.data import find_domain
    from raydm.sections import DataConfig

    rng = np.random.default_rng(0)
    folders = []
    for name in ("mnist_offline", "mnistm_offline"):
        folder = root / name
        config = DataConfig(image_size=28, image_channels=3)
        samples = find_domain(name).build(config).train
        count = images or len(samples)
        order = rng.permutation(len(samples))
        for index in range(count):
            chosen = int(order[index % len(samples)])
            image = samples.inputs[chosen]
            if index >= len(samples):
                image = torch.roll(image, tuple(int(v) for v in rng.integers(-2, 3, 2)), (1, 2))
            path = folder / str(int(samples.labels[chosen])) / f"{index:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        folders.append(folder)
    return folders[0], folders[1]


def plain(source: Path, target: Path, seed: int, budget: Budget, device: str = "cpu") -> dict:
    """The plain script's search (run in a process of its own with ``--arm plain``)."""
    import optuna
    import torch
    import torch.nn.functional as F
    from plain_dann import Net, Reverse, images

    from raydm.data.pair import load_domain_pair
    from raydm.sections import DataConfig

    torch.set_num_threads(2)
    data = load_domain_pair(
        DataConfig(
            source=f"folder:{source}", target=f"folder:{target}", image_size=28, image_channels=3
        )
    )
    on = torch.device(device)
    xs, ys = images(data.source_train).to(on), data.source_train.labels.to(on)
    xt = images(data.target_train).to(on)
    xv, yv = images(data.source_val).to(on), data.source_val.labels.to(on)
    xtest, ytest = images(data.target_test).to(on), data.target_test.labels.to(on)
    points = []  # (trial, epoch, source val accuracy, target test accuracy)

    def accuracy(net, inputs, labels) -> float:
        with torch.no_grad():
            return (net.label(net.features(inputs)).argmax(1) == labels).float().mean().item()

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 3e-3, 5e-2, log=True)
        lambda_max = trial.suggest_float("lambda_max", 0.1, 1.0, log=True)
        gamma = trial.suggest_float("gamma", 5.0, 15.0)
        weight_decay = trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True)
        torch.manual_seed(seed + trial.number)
        net = Net().to(on)
        optimizer = torch.optim.SGD(
            net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
        )
        total, best = budget.epochs * budget.iterations, 0.0
        for epoch in range(budget.epochs):
            for step in range(budget.iterations):
                p = (epoch * budget.iterations + step) / total
                for group in optimizer.param_groups:
                    group["lr"] = lr / (1 + 10 * p) ** 0.75
                s = torch.randint(len(xs), (64,), device=on)
                t = torch.randint(len(xt), (64,), device=on)
                features = torch.cat([net.features(xs[s]), net.features(xt[t])])
                loss = F.cross_entropy(net.label(features[:64]), ys[s])
                weight = lambda_max * (2 / (1 + math.exp(-gamma * p)) - 1)
                domain = net.domain(Reverse.apply(features, weight)).squeeze(1)
                is_source = torch.cat([torch.ones(64, device=on), torch.zeros(64, device=on)])
                loss = loss + F.binary_cross_entropy_with_logits(domain, is_source)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            net.eval()
            value = accuracy(net, xv, yv)
            points.append((trial.number, epoch + 1, value, accuracy(net, xtest, ytest)))
            net.train()
            best = max(best, value)
            trial.report(value, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned
        return best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP),
        pruner=optuna.pruners.SuccessiveHalvingPruner(),
    )
    study.optimize(objective, n_trials=budget.trials)
    pick = max(points, key=lambda point: point[2])  # the first of ties
    return {
        "epochs": len(points),
        "pick_oracle": pick[3],
        "best_oracle": max(point[3] for point in points),
    }


def raydm_arm(
    source: Path, target: Path, seed: int, root: str, budget: Budget, extra: list[str]
) -> dict:
    """``raydm tune`` as a user runs it (with the overrides ``extra``), timed from its start to
    its exit."""
    from raydm import metrics as m
    from raydm.analysis import scored_points
    from raydm.experiment import load_experiment
    from raydm.predict import kept_candidates

    overrides = [
        f"data.source=folder:{source}",
        f"data.target=folder:{target}",
        f"data.root={root}",
        f"search.num_samples={budget.trials}",
        f"search.searcher.n_startup_trials={STARTUP}",
        f"search.searcher.seed={seed}",
        f"train.seed={seed}",
        f"train.epochs={budget.epochs}",
        f"train.iters_per_epoch={budget.iterations}",
        *extra,
    ]
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, "-m", "raydm", "tune", "--space", str(SPACES / "dann.yaml")]
        command += ["--storage-path", storage, "--name", "run"]
        command += [part for item in overrides for part in ("--set", item)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - started
        experiment = load_experiment(Path(storage) / "run")
        points = scored_points(experiment)
        _, (pick, *_) = kept_candidates(Path(storage) / "run")  # the search's own final pick
        at_pick = points[(points["trial_id"] == pick.trial_id) & (points[m.EPOCH] == pick.epoch)]
        return {
            "wall_s": wall,
            "epochs": len(points),
            "pick_oracle": float(at_pick[m.TARGET_ACC].iloc[0]),
            "best_oracle": float(points[m.TARGET_ACC].max()),
        }


def plain_arm(source: Path, target: Path, seed: int, budget: Budget, device: str) -> dict:
    """The plain script in a process of its own, timed from its start to its exit."""
    command = [sys.executable, __file__, "--arm", "plain", "--source", str(source)]
    command += ["--device", device]
    command += ["--target", str(target), "--seed", str(seed)]
    command += ["--trials", str(budget.trials), "--epochs", str(budget.epochs)]
    command += ["--iterations", str(budget.iterations)]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    return {"wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arm", choices=["plain"], help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--trials", type=int, default=Budget.trials)
    parser.add_argument("--epochs", type=int, default=Budget.epochs)
    parser.add_argument("--iterations", type=int, default=Budget.iterations)
    parser.add_argument("--images", type=int, help="per domain (default: the 2,500 there are)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--variant",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="a third arm: raydm with these overrides (e.g. search.scheduler.reduction_factor=4)",
    )
    args = parser.parse_args()
    budget = Budget(args.trials, args.epochs, args.iterations)
    if args.arm == "plain":
        print(json.dumps(plain(args.source, args.target, args.seed, budget, args.device)))
        return
    arms = {"plain": None, "raydm": ["resources.gpu=0.25"] if args.device == "cuda" else []}
    if args.variant:
        arms["raydm " + " ".join(args.variant)] = arms["raydm"] + args.variant
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as folders:
        source, target = write_folders(Path(folders), args.images)
        for repeat in range(args.repeats):
            order = list(arms) if repeat % 2 == 0 else list(reversed(arms))
            for arm in order:
                if arms[arm] is None:
                    results[arm].append(plain_arm(source, target, repeat, budget, args.device))
                else:
                    run = raydm_arm(source, target, repeat, args.root, budget, arms[arm])
                    results[arm].append(run)
                print(f"repeat {repeat} {arm}: {results[arm][-1]}", flush=True)
    print(f"\n{budget.trials} trials, {args.images or 2500} images per domain, {args.device}")
    print("| arm | wall s (median) | epochs run | pick's oracle acc | best point's oracle acc |")
    print("|---|---|---|---|---|")
    for arm, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"| {arm} | {median['wall_s']:.0f} | {median['epochs']:.0f} | "
            f"{median['pick_oracle']:.3f} | {median['best_oracle']:.3f} |"
        )


if __name__ == "__main__":
    main()
