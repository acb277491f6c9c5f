"""Names of everything a trial reports, defined once.

Namespaces say what a number may be used for: ``train/`` describes optimisation, ``val/`` is
label-free (source labels only) and may select trials, ``oracle/`` uses target labels and is
for reporting only unless a search explicitly allows it.
"""

EPOCH = "epoch"
EPOCHS_PLANNED = "epochs_planned"

TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
SOURCE_VAL_ACC = "val/source_acc"
SOURCE_VAL_MACRO_ACC = "val/source_macro_acc"  # mean of per-class recalls
SOURCE_VAL_LOSS = "val/source_loss"
# Label-free validators on the unlabelled target train split (raydm/validators.py); each is
# "higher is better".
NEG_ENTROPY = "val/neg_entropy"
IM = "val/im"
BNM = "val/bnm"
SND = "val/snd"
CLASS_AMI = "val/class_ami"
# MixVal (Hu et al. 2023): accuracy on mixes of target pairs the model puts in the same class
# (intra), in different classes (inter), and the mean of the two.
MIXVAL_INTRA = "val/mixval_intra"
MIXVAL_INTER = "val/mixval_inter"
MIXVAL = "val/mixval"
# Minus importance-weighted source validation losses, weighted by a fresh domain classifier's
# density ratios: IWCV (plain weights), DEV (with a control variate), DEVN (normalised weights).
IWCV = "val/iwcv"
DEV = "val/dev"
DEVN = "val/devn"
VALIDATORS = (
    SOURCE_VAL_ACC,
    SOURCE_VAL_MACRO_ACC,
    NEG_ENTROPY,
    IM,
    BNM,
    SND,
    CLASS_AMI,
    MIXVAL_INTRA,
    MIXVAL_INTER,
    MIXVAL,
    IWCV,
    DEV,
    DEVN,
)
# The validators whose cost is more than a look at the softmax (SND's pairwise similarities,
# ClassAMI's k-means, MixVal's mixed forward passes, the importance-weighted ones' pass over
# source training images and cross-validated domain classifier): by default a search computes
# one only when it ranks or selects by it (search.costly_validators); the regret benchmark
# computes them all where ASHA compares trials and where trials end (BENCHMARKS.md).
COSTLY_VALIDATORS = (SND, CLASS_AMI, MIXVAL_INTRA, MIXVAL_INTER, MIXVAL, IWCV, DEV, DEVN)
TARGET_ACC = "oracle/target_acc"
PSEUDO_LABEL_ACC = "oracle/pseudo_label_acc"
PSEUDO_LABEL_COVERAGE = "train/pseudo_label_coverage"
PSEUDO_LABEL_SHARE = "train/pseudo_label_share"  # one metric per class: .../<class name>

# Wall-clock seconds of each epoch's training (CGDM's clustering included) and of its evaluation
# passes, validators and DEV's feature pass; checkpointing and Tune's bookkeeping are outside both.
TIME_TRAIN = "time/train_s"
TIME_EVAL = "time/eval_s"
# On a GPU: the most memory the trial's process has reserved on it so far (torch's caching
# allocator keeps what it reserves, so this is what trials sharing the GPU cannot use), in GiB.
GPU_PEAK_MEMORY = "gpu/peak_reserved_gib"

# best/<metric>: the best value of the selection metric a trial has reached so far.
BEST_PREFIX = "best/"

# The value Tune ranks a trial's checkpoints by to keep its best: the final selector's metric,
# sign-adjusted so higher is better, less 1e-9 per epoch, so that of tied epochs Tune keeps the
# first, the one the pick takes (Tune alone would keep the last).
CHECKPOINT_SCORE = "trial/checkpoint_score"

# A trial that cannot go on (its loss diverged, its GPU share ran out of memory) reports once
# more with these and ends: retrying would fail the same way.
FAILED = "trial/failed"
FAILURE_REASON = "trial/failure"

# What the trial ran on (raydm.engine.platform), with every result, so that a trial resumed on
# another node says so: two runs of a config give the same floats only on the same platform.
PLATFORM = "trial/platform"

# Metrics a search may rank trials by, with the direction that is better.
SELECTABLE = {
    **{name: "max" for name in VALIDATORS},
    SOURCE_VAL_LOSS: "min",
    TARGET_ACC: "max",
}

# What a search's final pick may rank by (search.select): any selectable metric, or EnsV, which
# scores every (trial, epoch) point by its agreement with the ensemble of all (raydm.selection).
ENSV = "ensv"
SELECTORS = (*SELECTABLE, ENSV)
LABEL_FREE = (*VALIDATORS, SOURCE_VAL_LOSS, ENSV)  # every selector that needs no target label


# Tune's own key, in every result: False in the last result of a trial the search's
# interruption left running.
DONE = "done"


def is_reported(name: str) -> bool:
    """Whether ``name`` is one of raydm's own per-epoch metrics (not Tune's bookkeeping)."""
    return name.startswith(("train/", "val/", "oracle/", "time/", "gpu/", BEST_PREFIX))
