import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from raydm import metrics as m
from raydm import selection
from raydm.correlation import rank_correlations
from raydm.validators import (
    MixVal,
    batch_nuclear_norm,
    class_ami,
    domain_log_ratio,
    importance_weighted_scores,
    information_maximization,
    macro_accuracy,
    neg_entropy,
    soft_neighborhood_density,
    target_validators,
)

K = 4


def _one_hot(classes, num_classes=K):
    return F.one_hot(torch.tensor(classes), num_classes).double()


def _uniform(n, num_classes=K):
    return torch.full((n, num_classes), 1.0 / num_classes, dtype=torch.float64)


def _binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


# --- entropy, IM, BNM ---------------------------------------------------------------------


def test_neg_entropy_is_zero_for_one_hot_and_minus_log_k_for_uniform():
    assert neg_entropy(_one_hot([0, 1, 2, 2, 3])) == 0.0
    assert neg_entropy(_uniform(5)) == pytest.approx(-math.log(K), abs=1e-12)
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert neg_entropy(half) == pytest.approx(-math.log(2) / 2, abs=1e-12)


def test_information_maximization_rewards_confident_and_diverse_predictions():
    diverse = _one_hot([0, 1, 2, 3, 0, 1, 2, 3])
    collapsed = _one_hot([2] * 8)
    assert information_maximization(diverse) == pytest.approx(math.log(K), abs=1e-12)
    assert information_maximization(collapsed) == pytest.approx(0.0, abs=1e-12)
    assert information_maximization(_uniform(8)) == pytest.approx(0.0, abs=1e-12)
    # Confident but using only two of the four classes: H(mean) = log 2, per-sample 0.
    assert information_maximization(_one_hot([0, 1, 0, 1])) == pytest.approx(math.log(2))


def test_batch_nuclear_norm_of_diverse_and_collapsed_one_hot_predictions():
    diverse = _one_hot([2, 0, 3, 1])  # N = K, every class once: a permutation matrix
    collapsed = _one_hot([1, 1, 1, 1])  # one column of ones: a single singular value sqrt(N)
    assert batch_nuclear_norm(diverse) == pytest.approx(1.0, abs=1e-12)
    assert batch_nuclear_norm(collapsed) == pytest.approx(math.sqrt(4) / 4, abs=1e-12)
    assert batch_nuclear_norm(diverse) > batch_nuclear_norm(collapsed)
    # Uniform: rank one, its singular value the Frobenius norm sqrt(N / K).
    assert batch_nuclear_norm(_uniform(4)) == pytest.approx(math.sqrt(4 / K) / 4, abs=1e-12)


# --- SND -------------------------------------------------------------------------------------


def _snd_reference(probabilities, temperature):
    """SND written out on the full N x N matrix."""
    p = probabilities / probabilities.norm(dim=1, keepdim=True)
    similarity = p @ p.T / temperature
    n = len(p)
    total = 0.0
    for i in range(n):
        others = torch.cat([similarity[i, :i], similarity[i, i + 1 :]])
        q = torch.softmax(others, 0)
        total += -(q * torch.log(q)).sum().item()
    return total / n


def test_snd_matches_a_hand_computed_case():
    # Samples 0 and 1 agree, sample 2 is orthogonal to both. With temperature 0.05, samples 0
    # and 1 see logits (20, 0) over their two neighbours; sample 2 sees (0, 0), i.e. uniform.
    probabilities = _one_hot([0, 0, 1], num_classes=2)
    close = math.exp(20) / (math.exp(20) + 1)
    expected = (2 * _binary_entropy(close) + math.log(2)) / 3
    assert soft_neighborhood_density(probabilities) == pytest.approx(expected, rel=1e-9)
    assert _snd_reference(probabilities, 0.05) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 1024])
def test_snd_in_row_blocks_equals_the_full_matrix(batch_size):
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.randn(7, 5, generator=generator, dtype=torch.float64).mul(3).softmax(1)
    for temperature in (0.05, 0.5):
        expected = _snd_reference(probabilities, temperature)
        got = soft_neighborhood_density(probabilities, temperature, batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-10)


def test_snd_is_higher_for_denser_neighbourhoods():
    # SND is the mean entropy of each sample's softmax over its neighbours' similarities. Six
    # one-hot predictions in two groups of three: every sample has two identical neighbours
    # (logit 20) and three orthogonal ones (logit 0), so its distribution splits almost evenly
    # between two neighbours: entropy ~ log 2. In three groups of two every sample has a single
    # identical neighbour, which takes almost all the mass: entropy ~ 0. Denser neighbourhoods
    # (more close neighbours per sample) give the higher SND.
    groups_of_three = _one_hot([0, 0, 0, 1, 1, 1], num_classes=3)
    groups_of_two = _one_hot([0, 0, 1, 1, 2, 2], num_classes=3)
    e20 = math.exp(20)
    q = e20 / (2 * e20 + 3), 1 / (2 * e20 + 3)
    three = -(2 * q[0] * math.log(q[0]) + 3 * q[1] * math.log(q[1]))
    q = e20 / (e20 + 4), 1 / (e20 + 4)
    two = -(q[0] * math.log(q[0]) + 4 * q[1] * math.log(q[1]))
    assert soft_neighborhood_density(groups_of_three) == pytest.approx(three, rel=1e-9)
    assert soft_neighborhood_density(groups_of_two) == pytest.approx(two, rel=1e-9)
    assert three == pytest.approx(math.log(2), abs=1e-6) and two < 1e-6
    assert soft_neighborhood_density(groups_of_three) > soft_neighborhood_density(groups_of_two)


def test_snd_needs_two_samples():
    with pytest.raises(ValueError, match="two samples"):
        soft_neighborhood_density(_one_hot([0]))


# --- ClassAMI --------------------------------------------------------------------------------


def _clustered_features(per_cluster=100, clusters=3, dim=8, seed=0):
    """Tight clusters around orthogonal directions; returns (features, cluster of each)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:clusters] * 5
    membership = torch.arange(clusters).repeat_interleave(per_cluster)
    noise = 0.1 * torch.randn(len(membership), dim, generator=generator)
    return centres[membership] + noise, membership


def test_class_ami_is_one_when_predictions_match_the_feature_clusters():
    features, membership = _clustered_features()
    relabelled = (membership + 1) % 3  # cluster ids are arbitrary: only the partition counts
    assert class_ami(features, relabelled, num_classes=3) == pytest.approx(1.0, abs=1e-9)


def test_class_ami_is_near_zero_for_predictions_unrelated_to_the_clusters():
    features, _ = _clustered_features()
    random_labels = torch.randint(
        0, 3, (len(features),), generator=torch.Generator().manual_seed(1)
    )
    assert abs(class_ami(features, random_labels, num_classes=3)) < 0.1


def test_class_ami_with_fewer_distinct_features_than_classes():
    # Two distinct feature vectors but five classes: k-means runs with two clusters (asking
    # scikit-learn for five would warn that it found fewer distinct clusters).
    features = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    predictions = torch.tensor([3] * 4 + [1] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert class_ami(features, predictions, num_classes=5) == pytest.approx(1.0)


def test_class_ami_clusters_feature_directions_not_magnitudes():
    # Two directions, each at norms 1 and 10. Unnormalised, k-means would split by norm; on
    # the unit sphere the clusters are the directions, which the predictions follow.
    generator = torch.Generator().manual_seed(0)
    directions = torch.tensor([[1.0, 0.2, 0.0], [0.0, 0.2, 1.0]])
    which = torch.arange(2).repeat(40)
    norms = torch.tensor([1.0, 10.0]).repeat_interleave(2).repeat(20)
    noise = 0.02 * torch.randn(80, 3, generator=generator)
    features = (directions[which] + noise) * norms[:, None]
    assert class_ami(features, which, num_classes=2) == pytest.approx(1.0)


# --- macro accuracy --------------------------------------------------------------------------


def test_macro_accuracy_weights_classes_equally():
    # Class 0: 8 samples, all right. Class 1: 2 samples, one right. Class 2 absent.
    labels = torch.tensor([0] * 8 + [1, 1])
    predictions = torch.tensor([0] * 8 + [1, 0])
    micro = (predictions == labels).double().mean().item()
    assert micro == pytest.approx(0.9)
    assert macro_accuracy(predictions, labels, num_classes=3) == pytest.approx((1.0 + 0.5) / 2)
    logits = F.one_hot(predictions, 3).float() * 2 - 1
    assert macro_accuracy(logits, labels, num_classes=3) == pytest.approx(0.75)


# --- IWCV, DEV, DEVN -------------------------------------------------------------------------


def dev_risk(source_val, losses, source_train, target):
    return importance_weighted_scores(source_val, losses, source_train, target)[m.DEV]


def _gaussian(n, mean, generator, scale=0.3):
    return torch.tensor(mean, dtype=torch.float64) + scale * torch.randn(
        n, len(mean), generator=generator, dtype=torch.float64
    )


def test_dev_risk_is_the_mean_loss_when_the_domains_match():
    generator = torch.Generator().manual_seed(0)
    mean = [1.0, 0.5, 0.0, 0.0, 0.2, 0.0]
    source_train = _gaussian(400, mean, generator)
    source_val = _gaussian(300, mean, generator)
    target = _gaussian(400, mean, generator)
    losses = 2 * torch.rand(300, generator=generator, dtype=torch.float64)
    score = dev_risk(source_val, losses, source_train, target)
    assert score == pytest.approx(-losses.mean().item(), rel=0.05)


def test_dev_risk_weights_the_source_samples_that_look_like_the_target():
    # The source is half near direction a, half near direction b; the target is all near a.
    # Source validation losses are 1 near a and 0 near b, so the plain mean loss is 0.5 but
    # the target risk is about 1: DEV must report the larger risk (a lower score).
    generator = torch.Generator().manual_seed(0)
    a, b = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    source_train = torch.cat([_gaussian(200, a, generator), _gaussian(200, b, generator)])
    source_val = torch.cat([_gaussian(100, a, generator), _gaussian(100, b, generator)])
    target = _gaussian(400, a, generator)
    losses = torch.cat([torch.ones(100), torch.zeros(100)]).double()
    score = dev_risk(source_val, losses, source_train, target)
    assert score < -losses.mean().item() - 0.3
    assert score == pytest.approx(-1.0, abs=0.15)


def test_dev_risk_without_variance_in_the_weights_is_the_weighted_mean():
    # One validation sample: no variance to estimate, eta = 0. The domains match, so w ~ 1.
    generator = torch.Generator().manual_seed(0)
    mean = [1.0, 1.0, 0.0]
    source_train, target = _gaussian(200, mean, generator), _gaussian(200, mean, generator)
    score = dev_risk(torch.tensor([mean]), torch.tensor([0.7]), source_train, target)
    assert math.isfinite(score) and score == pytest.approx(-0.7, rel=0.2)


# --- rank correlations -----------------------------------------------------------------------


def test_rank_correlations_of_monotone_and_reversed_validators():
    oracle = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.7])
    same = rank_correlations(oracle * 10 - 3, oracle)
    assert same["spearman"] == pytest.approx(1.0)
    assert same["weighted_spearman"] == pytest.approx(1.0)
    reversed_ = rank_correlations(-oracle, oracle)
    assert reversed_["spearman"] == pytest.approx(-1.0)
    # Not exactly -1: the two rankings' weighted ranks are not mirror images of each other.
    assert -1.0 < reversed_["weighted_spearman"] < -0.95


def test_weighted_spearman_cares_most_about_the_top_of_the_ranking():
    validator = np.arange(10.0)
    # The validator's five best points are ranked exactly right, its five worst backwards.
    oracle = np.array([5.0, 4, 3, 2, 1, 6, 7, 8, 9, 10])
    result = rank_correlations(validator, oracle)
    # Rank differences 4, 2, 0, 2, 4 in the bottom half, 0 in the top: squares sum to 40.
    assert result["spearman"] == pytest.approx(1 - 6 * 40 / (10 * 99))
    assert result["weighted_spearman"] > result["spearman"] + 0.1
    # And the mirror image: the top five backwards, the bottom five right.
    flipped = rank_correlations(validator, np.array([1.0, 2, 3, 4, 5, 10, 9, 8, 7, 6]))
    assert flipped["spearman"] == pytest.approx(result["spearman"])
    assert flipped["weighted_spearman"] < flipped["spearman"] - 0.1


def test_weighted_spearman_matches_musgrave_et_al_golden_values():
    # Worked by hand from powerful-benchmarker's weighted_spearman.py and the WeightedCorr
    # package it calls (method "spearman"), outside this implementation. Case 1: dense ranks
    # /max give weights max(v, t)^2 = [1/9, 4/9, 1/4, 1, 25/36, 1/9]; the weighted ranks of the
    # scores are the cumulative weights [1/9, 33/36, 17/36, 2.6111, 1.6111, 2/9], and of the
    # accuracies [2/9, 33/36, 17/36, 2.6111, 1.6111, 1/9]; their w-weighted Pearson is 0.999314.
    case_1 = rank_correlations([0.1, 0.4, 0.35, 0.8, 0.7, 0.2], [0.2, 0.5, 0.3, 0.9, 0.6, 0.1])
    assert case_1["weighted_spearman"] == pytest.approx(0.999314, abs=1e-6)
    assert case_1["spearman"] == pytest.approx(0.942857, abs=1e-6)
    # Case 2: weights [0.16, 0.16, 0.64, 0.64, 1]; weighted ranks [0.16, 0.32, 0.96, 1.6, 2.6]
    # and [0.32, 0.16, 1.6, 0.96, 2.6].
    case_2 = rank_correlations([1.0, 2, 3, 4, 5], [2.0, 1, 4, 3, 5])
    assert case_2["weighted_spearman"] == pytest.approx(0.855837, abs=1e-6)
    # Plain weighted Pearson on plain ranks, which this once computed, gives 0.925 on case 2.
    assert case_2["weighted_spearman"] != pytest.approx(0.925, abs=0.01)


def test_weighted_spearman_counts_a_tie_group_by_its_mean_weight():
    # Ties in the oracle: the two tied points share one weighted rank (their group's mean).
    tied = rank_correlations([1.0, 2, 3, 4], [1.0, 2, 2, 3])
    untied = rank_correlations([1.0, 2, 3, 4], [1.0, 2, 2.5, 3])
    assert 0 < tied["weighted_spearman"] < untied["weighted_spearman"] == pytest.approx(1.0)


def test_rank_correlations_are_nan_for_too_few_or_constant_points():
    for validator, oracle in [([1.0, 2.0], [1.0, 2.0]), ([1.0] * 4, [1, 2, 3, 4])]:
        result = rank_correlations(validator, oracle)
        assert math.isnan(result["spearman"]) and math.isnan(result["weighted_spearman"])
    result = rank_correlations([1.0, 2.0, 3.0], [0.5] * 3)
    assert math.isnan(result["spearman"]) and math.isnan(result["weighted_spearman"])


def test_a_failed_validator_value_counts_as_the_worst_finite_one():
    failed = rank_correlations([math.nan, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4])
    tied_with_worst = rank_correlations([2.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4])
    assert failed == pytest.approx(tied_with_worst)
    assert failed["spearman"] == pytest.approx(3 / math.sqrt(10))


# --- all target validators -------------------------------------------------------------------


def test_target_validators_reports_every_validator_under_its_metric_name():
    features, membership = _clustered_features(per_cluster=10)
    probabilities = F.one_hot(membership, 3).double() * 0.9 + 0.1 / 3
    scores = target_validators(probabilities, features, num_classes=3)
    assert set(scores) == {m.NEG_ENTROPY, m.IM, m.BNM, m.SND, m.CLASS_AMI}
    assert scores[m.NEG_ENTROPY] == pytest.approx(neg_entropy(probabilities))
    assert scores[m.IM] == pytest.approx(information_maximization(probabilities))
    assert scores[m.BNM] == pytest.approx(batch_nuclear_norm(probabilities))
    assert scores[m.SND] == pytest.approx(soft_neighborhood_density(probabilities))
    assert scores[m.CLASS_AMI] == pytest.approx(1.0)


def test_importance_weights_recover_a_known_density_ratio():
    # Source N(0, 1), target N(1, 1): p_t / p_s = exp(x - 1/2), linear in x on the log scale.
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(4000, 1, generator=generator, dtype=torch.float64)
    target = torch.randn(4000, 1, generator=generator, dtype=torch.float64) + 1.0
    query = torch.tensor([[-1.0], [0.0], [1.0], [2.0]], dtype=torch.float64)
    log_ratio = domain_log_ratio(source, target, query)
    assert log_ratio == pytest.approx([-1.5, -0.5, 0.5, 1.5], abs=0.15)
    # IWCV of the loss L(x) = x on source samples estimates its target mean, E_t[x] = 1
    # (the unweighted source mean is 0); the scores are negated risks.
    source_val = torch.randn(4000, 1, generator=generator, dtype=torch.float64)
    scores = importance_weighted_scores(source_val, source_val[:, 0], source, target)
    assert -scores[m.IWCV] == pytest.approx(1.0, abs=0.15)
    assert -scores[m.DEV] == pytest.approx(1.0, abs=0.15)


def test_devn_normalises_the_weights_to_mean_one_before_weighting():
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(2000, 1, generator=generator, dtype=torch.float64)
    target = torch.randn(2000, 1, generator=generator, dtype=torch.float64) + 1.0
    source_val = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    losses = torch.arange(9.0, dtype=torch.float64)
    weights = np.exp(domain_log_ratio(source, target, source_val))
    scaled = weights / weights.max()
    expected = np.mean((scaled - scaled.mean() + 1) * losses.numpy())
    scores = importance_weighted_scores(source_val, losses, source, target)
    assert -scores[m.DEVN] == pytest.approx(expected)
    assert -scores[m.IWCV] == pytest.approx(np.mean(weights * losses.numpy()))


# --- MixVal ------------------------------------------------------------------------------------


def _mixval(predict, inputs, seed=0, batch_size=None):
    mixval = MixVal(seed=seed)
    batch_size = batch_size or len(inputs)
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        mixval.add(predict, batch, predict(batch))
    return mixval.scores()


def test_mixval_is_one_for_a_model_that_follows_the_dominant_input():
    # Inputs are class indicator vectors; the model's logits are its inputs, so a mix
    # 0.55 e_a + 0.45 e_b is predicted as a, the dominant input's class, for every pair.
    inputs = F.one_hot(torch.arange(40) % 4, 4).float()
    scores = _mixval(lambda x: x, inputs, batch_size=16)
    assert scores == {m.MIXVAL_INTRA: 1.0, m.MIXVAL_INTER: 1.0, m.MIXVAL: 1.0}


def test_mixval_is_low_for_a_collapsed_model_and_one_that_follows_the_partner():
    inputs = F.one_hot(torch.arange(40) % 4, 4).float()
    collapsed = _mixval(lambda x: torch.ones(len(x), 4) * torch.tensor([0.0, 1, 0, 0]), inputs)
    # Every pair is in one class: intra is trivially right, and no pair shows two classes apart.
    assert collapsed == {m.MIXVAL_INTRA: 1.0, m.MIXVAL_INTER: 0.0, m.MIXVAL: 0.5}
    # A model that predicts a mix's minor input gets every inter-class pair wrong.
    minor = _mixval(lambda x: torch.where(x > 0.5, 0.0, x) + 2 * (x == 1), inputs)
    assert minor[m.MIXVAL_INTER] == 0.0 and minor[m.MIXVAL_INTRA] == 1.0


def test_mixval_pairs_by_its_seed():
    # A model right on mixes of classes 0 and 1 only: which pairs it sees decides its score.
    inputs = F.one_hot(torch.arange(64) % 4, 4).float()

    def predict(x):
        dominant = x.argmax(1)
        wrong = (dominant >= 2) & (x.max(1).values < 1)
        return F.one_hot(torch.where(wrong, (dominant + 1) % 4, dominant), 4).float()

    assert _mixval(predict, inputs, seed=3) == _mixval(predict, inputs, seed=3)
    inter = {_mixval(predict, inputs, seed=seed)[m.MIXVAL_INTER] for seed in range(5)}
    assert len(inter) > 1 and all(0 < value < 1 for value in inter)


# --- EnsV -------------------------------------------------------------------------------------


def test_ensemble_agreement_scores_an_outlier_candidate_lowest():
    # Three candidates on four samples, two classes. A and B agree but on sample 3; C (the
    # outlier) predicts class 1 everywhere. Mean softmax per sample: class 0 wins on samples
    # 0, 1 (A, B confident), class 1 on 2 and 3, so the consensus is [0, 0, 1, 1].
    a = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4]])
    b = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    c = torch.tensor([[0.4, 0.6], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8]])
    scores = selection.ensemble_agreement(torch.stack([a, b, c]))
    assert scores.tolist() == pytest.approx([0.75, 1.0, 0.5])


def test_ensv_ranks_from_softmaxes_or_from_an_ensv_column_already_scored():
    # The same three candidates as above, as (trial, epoch) points.
    a = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4]])
    b = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    c = torch.tensor([[0.4, 0.6], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8]])
    points = pd.DataFrame({"trial_id": ["a", "b", "c"], m.EPOCH: [1, 1, 1]})
    softmaxes = {("a", 1): a, ("b", 1): b, ("c", 1): c}
    ranked = selection.ranking(points, m.ENSV, softmaxes)
    assert ranked["trial_id"].tolist() == ["b", "a", "c"]
    assert ranked[selection.RANK_VALUE].tolist() == pytest.approx([1.0, 0.75, 0.5])
    # A table already scored (the report's, the benchmark's): its column, not nothing.
    scored = points.assign(**{m.ENSV: [0.75, 1.0, 0.5]})
    assert selection.by_metric(scored, m.ENSV, "max") == selection.Pick(m.ENSV, "b", 1, 1.0)


def test_ensemble_agreement_rejects_a_flat_input():
    with pytest.raises(ValueError, match="M x N x K"):
        selection.ensemble_agreement(torch.rand(4, 2))


def test_mixval_scores_only_its_first_samples():
    # A first batch of 5 the model gets right under mixing, then 27 it gets wrong (it always
    # answers class 3): only the first 5 count when MixVal takes 5 samples.
    inputs = F.one_hot(torch.arange(32) % 4, 4).float()

    def scores(samples):
        mixval = MixVal(seed=0, samples=samples)
        mixval.add(lambda x: x, inputs[:5], inputs[:5])
        wrong = lambda x: F.one_hot(torch.full((len(x),), 3), 4).float()  # noqa: E731
        mixval.add(wrong, inputs[5:], inputs[5:])
        return mixval.scores()

    assert scores(5)[m.MIXVAL] == 1.0
    assert scores(32)[m.MIXVAL] < 0.6


def test_rank_correlations_take_a_filtered_pandas_column():
    # A column filtered by a mask keeps its index gaps; the benchmark hands those in.
    import pandas as pd

    values = pd.Series([0.1, float("nan"), 0.4, 0.35, 0.8, 0.7, 0.2])
    oracle = pd.Series([0.2, 0.9, 0.5, 0.3, 0.9, 0.6, 0.1])
    known = values.notna()
    result = rank_correlations(values[known], oracle[known])
    assert result["weighted_spearman"] == pytest.approx(0.999314, abs=1e-6)
