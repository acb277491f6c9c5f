"""Time one training iteration of a method on random 32x32 digits-sized data.

    python benchmarks/step_time.py --method cgdm --backbone lenet --batch-size 32 --num-k 4 \
        --threads 1 --iters 20
    python benchmarks/step_time.py --method cgdm ... --official-style

Prints the parameter counts of G and of each head, then ``ms_per_iter=<median>`` as the last
line. ``--official-style`` runs the CGDM iteration the way the official code computes it (one
autograd call per loss and parameter tensor for L_GD, step B's forward through G with a graph,
gradients for every parameter in step C), with the same losses, so the two can be compared on
one machine in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from raydm.config import config_from_dict
from raydm.data.pair import DomainPair
from raydm.data.samples import LabelledSet
from raydm.engine import build_method, place
from raydm.memory import keep_freed_memory
from raydm.methods.cgdm import (
    CGDM,
    classifier_discrepancy,
    information_maximization,
    weighted_cross_entropy,
)

MODEL = {
    "cgdm": {"classifier_hidden": [100, 100], "dropout": 0.5},
    "dann": {"classifier_hidden": [100, 100], "dropout": 0.0},
    "source_only": {"classifier_hidden": [100, 100], "dropout": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(MODEL), default="cgdm")
    parser.add_argument("--backbone", choices=["lenet", "dtn"], default="lenet")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-k", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--official-style", action="store_true")
    parser.add_argument(
        "--system-allocator",
        action="store_true",
        help="leave glibc's malloc settings as they are (raydm's trials keep freed memory)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    raw = {
        "method": args.method,
        "data": {"source": "digits_printed", "target": "digits_handwritten"},
        "model": {
            "backbone": args.backbone,
            "backbone_args": {"batch_norm": True} if args.backbone == "lenet" else {},
            **MODEL[args.method],
        },
    }
    if args.method == "cgdm":
        raw["method_args"] = {"num_k": args.num_k}
    config = config_from_dict(raw)
    n = args.batch_size
    images = LabelledSet(torch.randn(4 * n, 1, 32, 32), torch.randint(0, 10, (4 * n,)))
    data = DomainPair(images, images, images, images, tuple("0123456789"), (1, 32, 32))
    method = build_method(config, data)
    if not args.official_style:  # the official code keeps torch's default layout and allocator
        method = place(method, torch.device("cpu"), images=True)
        if not args.system_allocator:
            keep_freed_memory()
    method.train()
    if isinstance(method, CGDM):
        method.pseudo_labels = torch.randint(0, 10, (4 * n,))  # so that L_GD is computed
        heads = [sum(p.numel() for p in head.parameters()) for head in method.heads]
    else:
        heads = [sum(p.numel() for p in method.head.parameters())]
    g_count = sum(p.numel() for p in method.backbone.parameters())
    update = method.update
    if args.official_style:
        if not isinstance(method, CGDM):
            parser.error("--official-style applies to --method cgdm")
        update = lambda *a: official_style_update(method, *a)  # noqa: E731

    timings = []
    for step in range(args.warmup + args.iters):
        source, target = torch.randn(n, 1, 32, 32), torch.randn(n, 1, 32, 32)
        if not args.official_style:
            source = source.contiguous(memory_format=torch.channels_last)
            target = target.contiguous(memory_format=torch.channels_last)
        labels, index = torch.randint(0, 10, (n,)), torch.randperm(4 * n)[:n]
        start = time.perf_counter()
        update(source, labels, target, index, 0.5)
        if step >= args.warmup:
            timings.append(time.perf_counter() - start)
    print(f"params: G={g_count} heads={heads}")
    print(f"ms_per_iter={1000 * statistics.median(timings):.1f}")


def official_style_update(method: CGDM, source, labels, target, target_index, progress) -> None:
    """The CGDM iteration computed the official code's way, same losses as CGDM.update."""
    args, n = method.args, len(labels)
    both = torch.cat([source, target])
    pseudo = method.pseudo_labels[target_index]

    def heads_on(features):
        return [head(features) for head in method.heads]

    def im(logits):
        return sum(information_maximization(F.softmax(out[n:], 1)) for out in logits)

    # Step A
    logits = heads_on(method.backbone(both))
    loss = sum(F.cross_entropy(out[:n], labels) for out in logits) + args.w_ent * im(logits)
    loss = loss + args.w_pl * sum(weighted_cross_entropy(out[n:], pseudo) for out in logits)
    for opt in method.optimizers():
        opt.zero_grad()
    loss.backward()
    for opt in method.optimizers():
        opt.step()
    # Step B: forward through G with a graph, backward into everything, step the heads.
    logits = heads_on(method.backbone(both))
    loss = sum(F.cross_entropy(out[:n], labels) for out in logits)
    loss = loss - args.w_dis * classifier_discrepancy(logits[0][n:], logits[1][n:])
    loss = loss + args.w_ent * im(logits)
    for opt in method.optimizers():
        opt.zero_grad()
    loss.backward()
    method.head_optimizer.step()
    # Step C: per-tensor autograd calls for L_GD.
    for _ in range(args.num_k):
        logits = heads_on(method.backbone(both))
        loss = args.w_dis * classifier_discrepancy(logits[0][n:], logits[1][n:])
        loss = loss + args.w_ent * im(logits)
        per_head = []
        for out, head in zip(logits, method.heads, strict=True):
            loss_s = F.cross_entropy(out[:n], labels)
            loss_t = weighted_cross_entropy(out[n:], pseudo)
            cosines = []
            for p in head.parameters():
                g_s = torch.autograd.grad(loss_s, p, create_graph=True)[0]
                g_t = torch.autograd.grad(loss_t, p, create_graph=True)[0]
                dim = 1 if p.dim() > 1 else 0
                cosines.append(F.cosine_similarity(g_t, g_s, dim=dim).mean())
            per_head.append((1 - torch.stack(cosines)).mean())
        loss = loss + args.w_gd * (per_head[0] + per_head[1]) / 2
        for opt in method.optimizers():
            opt.zero_grad()
        loss.backward()
        method.generator_optimizer.step()


if __name__ == "__main__":
    main()
