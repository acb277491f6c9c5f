"""What exists, one line each: what `raydm list` prints.

Read from the same registries the config validation uses, so the list cannot drift from what a
search-space file accepts.
"""

from __future__ import annotations

from pydantic import BaseModel

from raydm import metrics as m
from raydm.backbones import BACKBONES
from raydm.data import DOMAINS, IMAGE_BENCHMARKS, PATH_DOMAINS
from raydm.methods import METHODS

KINDS = ("methods", "domains", "backbones", "validators")

VALIDATOR_SUMMARIES = {
    m.SOURCE_VAL_ACC: "accuracy on the held-out source validation split (the default)",
    m.SOURCE_VAL_MACRO_ACC: "mean per-class recall on the source validation split",
    m.NEG_ENTROPY: "minus the mean entropy of the target predictions",
    m.IM: "entropy of the mean target prediction minus the mean entropy",
    m.BNM: "nuclear norm of the target softmax matrix / N (Cui et al. 2020)",
    m.SND: "soft neighbourhood density, tau 0.05 (Saito et al. 2021)",
    m.CLASS_AMI: "AMI of k-means on target features vs predictions (Musgrave et al. 2022)",
    m.MIXVAL_INTRA: "accuracy on mixes of target pairs predicted alike (MixVal, Hu et al. 2023)",
    m.MIXVAL_INTER: "accuracy on mixes of target pairs predicted apart (MixVal, Hu et al. 2023)",
    m.MIXVAL: "mean of MixVal's intra and inter accuracies",
    m.IWCV: "minus the importance-weighted source validation loss (Sugiyama et al. 2007)",
    m.DEV: "minus IWCV with DEV's control variate (You et al. 2019)",
    m.DEVN: "minus IWCV with weights / max, shifted to mean 1 (DEVN, pytorch-adapt)",
    m.SOURCE_VAL_LOSS: "cross-entropy on the source validation split (lower is better)",
    m.ENSV: "final pick only: agreement with all candidates' ensemble (EnsV, Hu et al. 2024)",
}


def describe(kind: str) -> list[str]:
    """One line per entry of ``kind`` (one of KINDS)."""
    if kind == "methods":
        return [
            _line(name, METHODS.get(name).summary, METHODS.get(name).Args)
            for name in METHODS.names()
        ]
    if kind == "backbones":
        lines = []
        for name in BACKBONES.names():
            entry = BACKBONES.get(name)
            takes = entry.input_kind
            if entry.image_input is not None:
                image = entry.image_input
                crop = f", crop {image.crop}" if image.crop else ""
                takes = f"images {image.size}x{image.size}{crop}"
            lines.append(_line(name, f"{entry.description}; takes {takes}", entry.Args))
        return lines
    if kind == "domains":
        lines = [
            f"{name}  {DOMAINS.get(name).description} ({DOMAINS.get(name).kind})"
            for name in DOMAINS.names()
        ]
        lines += [
            f"{prefix}:PATH  {description}" for prefix, (_, description) in PATH_DOMAINS.items()
        ]
        lines += [
            f"{benchmark}:{'|'.join(domains)}  data.root/{layout.format(domain='<domain>')}"
            for benchmark, (domains, layout) in IMAGE_BENCHMARKS.items()
        ]
        return lines
    if kind == "validators":
        return [f"{name}  {VALIDATOR_SUMMARIES[name]}" for name in m.LABEL_FREE]
    raise ValueError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")


def _line(name: str, summary: str, args: type[BaseModel]) -> str:
    options = ", ".join(
        f"{field}={info.get_default(call_default_factory=True)!r}"
        for field, info in args.model_fields.items()
    )
    return f"{name}  {summary}" + (f"  [options: {options}]" if options else "")
