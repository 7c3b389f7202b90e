"""The evaluator's metrics, the specificity guard, best-epoch selection and its tie-breaking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from torch import nn

from dermascreen.evaluation.metrics import binary_metrics, multiclass_metrics
from dermascreen.training import predict_proba
from dermascreen.training.data import eval_batches
from dermascreen.training.engines import BestModel, create_evaluator, guarded_score, metric_names, ranking_key

from training_toys import NORMALIZATION, tiny_net

CPU = torch.device("cpu")


@pytest.mark.parametrize(("label_key", "num_classes"), [("binary", 2), ("labels", 7)])
def test_evaluator_metrics_are_metrics_py_on_the_model_probabilities(toy_val, label_key, num_classes):
    model = tiny_net(num_classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.linspace(1.0, 2.0, num_classes))
    evaluator = create_evaluator(model, loss_fn, CPU, NORMALIZATION, num_classes)

    evaluator.run(eval_batches(toy_val, label_key, batch_size=10, device=CPU))  # 48 samples: a short last batch

    proba = predict_proba(model, toy_val["images"], NORMALIZATION, device="cpu")
    y = toy_val[label_key]
    expected = binary_metrics(y, proba[:, 1]) if num_classes == 2 else multiclass_metrics(y, proba)
    metrics = evaluator.state.metrics
    for name, value in expected.items():
        assert metrics[name] == (value if name == "confusion_matrix" else pytest.approx(value, nan_ok=True)), name
    with torch.no_grad():
        logits = torch.log(torch.from_numpy(proba))  # log-softmax: CE of the logits
    # the epoch's weighted cross-entropy, not a mean of batch means
    assert metrics["loss"] == pytest.approx(loss_fn(logits.float(), torch.from_numpy(y)).item(), rel=1e-5)


def test_guard_makes_low_specificity_epochs_unrankable():
    all_malignant = {"recall": 1.0, "specificity": 0.0, "roc_auc": 0.5, "loss": 0.7}
    balanced = {"recall": 0.6, "specificity": 0.8, "roc_auc": 0.7, "loss": 0.6}

    assert guarded_score(all_malignant, "recall", "max", min_specificity=0.5) == -math.inf
    assert guarded_score(balanced, "recall", "max", min_specificity=0.5) == 0.6
    assert guarded_score(all_malignant, "recall", "max", min_specificity=0.0) == 1.0
    assert guarded_score(balanced, "loss", "min", min_specificity=0.5) == -0.6
    assert guarded_score({**balanced, "roc_auc": math.nan}, "roc_auc", "max", 0.5) == -math.inf
    assert guarded_score({"balanced_accuracy": 0.4}, "balanced_accuracy", "max", 0.5) == 0.4  # multiclass: no guard


def disagreeing_epochs() -> tuple[dict, dict]:
    """Validation metrics of two epochs on which recall at 0.5 and spec_at_recall disagree.

    10 malignant, 90 benign. ``barely_guarded``: every malignant at 0.6 (recall@0.5 = 1), half the
    benign above them at 0.7 (specificity 0.5, just at the guard; AUC 0.5). ``separating``: every
    benign at 0.3, malignant at 0.55 (3), 0.45 (6) and 0.2 (1): recall@0.5 only 0.3, but recall
    0.9 is reached with no benign flagged.
    """
    y = np.r_[np.ones(10, dtype=int), np.zeros(90, dtype=int)]
    barely_guarded = np.r_[np.full(10, 0.6), np.full(45, 0.7), np.full(45, 0.3)]
    separating = np.r_[np.full(3, 0.55), np.full(6, 0.45), 0.2, np.full(90, 0.3)]
    return ({**binary_metrics(y, barely_guarded), "loss": 0.5}, {**binary_metrics(y, separating), "loss": 0.5})


def test_recall_at_half_and_spec_at_recall_pick_different_epochs():
    barely_guarded, separating = disagreeing_epochs()
    assert (barely_guarded["recall"], barely_guarded["specificity"], barely_guarded["spec_at_recall"]) == (1.0, 0.5, 0.5)
    assert (separating["recall"], separating["spec_at_recall"]) == (pytest.approx(0.3), 1.0)

    def best(monitor):
        keys = [ranking_key(m, monitor, "max", min_specificity=0.5) for m in (barely_guarded, separating)]
        return ("barely_guarded", "separating")[keys.index(max(keys))]

    assert best("recall") == "barely_guarded"
    assert best("spec_at_recall") == "separating"


def test_spec_at_recall_guards_the_specificity_at_the_recall_target():
    barely_guarded, _ = disagreeing_epochs()
    # specificity at 0.5 passes 0.5 exactly, and so does spec_at_recall; at 0.6 both are guarded
    assert guarded_score(barely_guarded, "spec_at_recall", "max", 0.5) == 0.5
    assert guarded_score(barely_guarded, "spec_at_recall", "max", 0.6) == -math.inf
    high_at_half = {**barely_guarded, "specificity": 0.9, "spec_at_recall": 0.2}
    assert guarded_score(high_at_half, "spec_at_recall", "max", 0.5) == -math.inf  # its 0.5 point is irrelevant
    assert guarded_score(high_at_half, "recall", "max", 0.5) == 1.0


def _evaluated(metrics: dict) -> Engine:
    evaluator = Engine(lambda engine, batch: None)
    evaluator.state.metrics = dict(metrics)
    return evaluator


def test_best_model_skips_guarded_epochs_and_breaks_ties_by_auc_then_loss():
    model, trainer = nn.Linear(2, 2), Engine(lambda engine, batch: None)
    best = BestModel(model, lambda m: ranking_key(m, "recall", "max", 0.5), trainer)
    epochs = [
        {"recall": 1.0, "specificity": 0.1, "roc_auc": 0.9, "loss": 0.1},  # 1: guarded, never best
        {"recall": 0.7, "specificity": 0.6, "roc_auc": 0.8, "loss": 0.5},  # 2: best
        {"recall": 0.7, "specificity": 0.9, "roc_auc": 0.7, "loss": 0.4},  # 3: tie on recall, worse AUC
        {"recall": 0.7, "specificity": 0.7, "roc_auc": 0.8, "loss": 0.3},  # 4: same AUC, lower loss: best
        {"recall": 0.7, "specificity": 0.7, "roc_auc": 0.8, "loss": 0.3},  # 5: complete tie: earlier stays
    ]
    weights_at = {}
    for epoch, metrics in enumerate(epochs, start=1):
        trainer.state.epoch = epoch
        with torch.no_grad():
            model.weight.fill_(epoch)
        best(_evaluated(metrics))
        weights_at[epoch] = best.epoch

    assert weights_at == {1: None, 2: 2, 3: 2, 4: 4, 5: 4}
    assert best.weights["weight"].unique().tolist() == [4.0]
    assert best.metrics["loss"] == 0.3 and best.last_metrics == epochs[-1]


def test_best_model_state_round_trip():
    model, trainer = nn.Linear(2, 2), Engine(lambda engine, batch: None)
    best = BestModel(model, lambda m: ranking_key(m, "recall", "max", 0.5), trainer)
    trainer.state.epoch = 3
    best(_evaluated({"recall": 0.5, "specificity": 0.9, "roc_auc": 0.6, "loss": 0.2}))

    restored = BestModel(model, best.key_fn, trainer)
    restored.load_state_dict(best.state_dict())

    assert (restored.key, restored.epoch, restored.metrics) == (best.key, 3, best.metrics)
    assert torch.equal(restored.weights["weight"], model.weight)


def test_metric_names_list_every_scalar_metric():
    assert {"recall", "specificity", "spec_at_recall", "roc_auc", "pr_auc", "f2", "loss"} <= set(metric_names(2))
    assert {"balanced_accuracy", "auc", "macro_f1", "loss"} <= set(metric_names(7))
    assert "confusion_matrix" not in metric_names(7)
