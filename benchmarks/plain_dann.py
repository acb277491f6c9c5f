"""A plain DANN, as a user would write it from the JMLR paper, to stand beside raydm's.

Ganin et al., JMLR 17(59) 2016, section 5.2: the MNIST architecture (conv5x5-32, ReLU, maxpool2,
conv5x5-48, ReLU, maxpool2, FC100, FC100, FC10; a domain head FC100 -> 1 behind the gradient
reversal layer), no batch norm, no weight decay, 28x28 inputs, SGD with momentum 0.9, batches of
64 + 64, mu_p = 0.01 / (1 + 10 p)^0.75 and lambda_p = 2 / (1 + exp(-10 p)) - 1. Nothing of raydm
is used but the images, so a gap between the two arms is raydm's, not the data's.

    python benchmarks/plain_dann.py --iterations 3000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from raydm.data.pair import load_domain_pair
from raydm.sections import DataConfig


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, coefficient):
        ctx.coefficient = coefficient
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coefficient * grad, None


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )  # fmt: skip
        self.label = nn.Sequential(
            nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10)
        )
        self.domain = nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 1))


def images(part) -> torch.Tensor:
    return (part.inputs.float() / 255 - 0.5) / 0.5


def train(source, target, test, iterations: int, seed: int, adapt: bool, batch: int = 64):
    """Target test accuracy after ``iterations`` steps (``adapt=False``: source only)."""
    torch.manual_seed(seed)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xs, ys, xt = images(source), source.labels, images(target)
    for step in range(iterations):
        p = step / iterations
        for group in optimizer.param_groups:
            group["lr"] = 0.01 / (1 + 10 * p) ** 0.75
        s = torch.randint(len(xs), (batch,))
        features = net.features(xs[s])
        loss = F.cross_entropy(net.label(features), ys[s])
        if adapt:
            t = torch.randint(len(xt), (batch,))
            both = torch.cat([features, net.features(xt[t])])
            lam = 2 / (1 + math.exp(-10 * p)) - 1
            domain = net.domain(Reverse.apply(both, lam)).squeeze(1)
            is_source = torch.cat([torch.ones(batch), torch.zeros(batch)])
            loss = loss + F.binary_cross_entropy_with_logits(domain, is_source)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predictions = net.label(net.features(images(test))).argmax(1)
    return (predictions == test.labels).float().mean().item()


def pair(source: str = "mnist_offline", target: str = "mnistm_offline"):
    """raydm's split of the pair at the paper's 28x28, grey replicated to RGB."""
    return load_domain_pair(
        DataConfig(source=source, target=target, image_size=28, image_channels=3)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = pair()
    for adapt in (False, True):
        accuracies = [
            train(data.source_train, data.target_train, data.target_test, args.iterations, s, adapt)
            for s in args.seeds
        ]
        print(
            f"plain {'dann' if adapt else 'source_only'}: {statistics.mean(accuracies):.3f} "
            f"({', '.join(f'{a:.3f}' for a in accuracies)})",
            flush=True,
        )


if __name__ == "__main__":
    main()
