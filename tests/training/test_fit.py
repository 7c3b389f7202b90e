"""fit / predict_proba end to end on a toy task: learning, selection, reproducibility, resumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dermascreen.data.medmnist_info import class_names
from dermascreen.evaluation.metrics import binary_metrics
from dermascreen.training import fit, predict_proba
from dermascreen.training.checkpoint import FILENAME

from training_toys import (BASE_CONFIG, NORMALIZATION, SimulatedKill, assert_same_weights, count_train_batches,
                           tiny_net, toy_split, without_times)


def run(train, val, model=None, checkpoint_dir=None, label_key="binary", **overrides):
    return fit(model or tiny_net(), train, val, {**BASE_CONFIG, **overrides}, [1.0, 2.0] if label_key == "binary"
               else None, NORMALIZATION, label_key=label_key, checkpoint_dir=checkpoint_dir)


def test_fit_learns_and_returns_the_best_epoch(toy_train, toy_val):
    model = tiny_net()
    result = run(toy_train, toy_val, model, epochs=4)

    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.stop_reason == "max_epochs" and not result.stopped_early
    assert {"train_loss", "val_recall", "val_specificity", "val_roc_auc", "val_loss", "lr"} <= set(result.history[0])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_metrics["roc_auc"] > 0.9
    best_row = result.history[result.best_epoch - 1]
    assert best_row["val_recall"] == max(row["val_recall"] for row in result.history
                                         if row["val_specificity"] >= 0.5)
    # the model ends holding the best weights: its predictions reproduce the best epoch's metrics
    proba = predict_proba(model, toy_val["images"], NORMALIZATION, batch_size=7, device="cpu")
    again = binary_metrics(toy_val["binary"], proba[:, 1])
    assert again == pytest.approx({k: v for k, v in result.best_metrics.items() if k != "loss"})
    assert_same_weights(model.state_dict(), result.state_dict)


def test_same_seed_same_run_other_seed_other_run(toy_train, toy_val):
    augment = {"rotation": 20, "shift": 0.15, "zoom": 0.1}  # random draws must be seeded too
    first = run(toy_train, toy_val, augment=augment)
    second = run(toy_train, toy_val, augment=augment)
    other = run(toy_train, toy_val, augment=augment, seed=4)

    assert without_times(first.history) == without_times(second.history)
    assert_same_weights(first.state_dict, second.state_dict)
    assert without_times(other.history) != without_times(first.history)


def test_killed_run_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_one(toy_train, toy_val, tmp_path):
    config = {"epochs": 4, "augment": {"rotation": 20, "shift": 0.15}, "checkpoint_every_s": 0}  # save every epoch
    uninterrupted = run(toy_train, toy_val, checkpoint_dir=tmp_path / "whole", **config)

    doomed = tiny_net()
    count_train_batches(doomed, fail_after=2 * 6 + 3)  # 6 batches an epoch: dies inside epoch 3
    with pytest.raises(SimulatedKill):
        run(toy_train, toy_val, doomed, checkpoint_dir=tmp_path / "killed", **config)
    restarted = tiny_net()  # a restart rebuilds the same model from the same seed
    batches = count_train_batches(restarted)
    resumed = run(toy_train, toy_val, restarted, checkpoint_dir=tmp_path / "killed", **config)

    assert batches[0] == 2 * 6  # epochs 3 and 4 only
    assert without_times(resumed.history) == without_times(uninterrupted.history)
    assert_same_weights(resumed.state_dict, uninterrupted.state_dict)
    assert_same_weights(restarted.state_dict(), uninterrupted.state_dict)
    assert resumed.best_epoch == uninterrupted.best_epoch


def test_finished_run_returns_its_stored_result_without_training(toy_train, toy_val, tmp_path):
    first = run(toy_train, toy_val, checkpoint_dir=tmp_path)
    untrainable = tiny_net()  # the same initial model, which must not train again
    count_train_batches(untrainable, fail_after=0)  # any training step would raise

    again = run(toy_train, toy_val, untrainable, checkpoint_dir=tmp_path, progress=True, compile=False)

    assert again.history == first.history and again.best_epoch == first.best_epoch
    assert_same_weights(again.state_dict, first.state_dict)
    assert_same_weights(untrainable.state_dict(), first.state_dict)


def test_run_killed_between_its_last_epoch_and_its_end_is_finished(toy_train, toy_val, tmp_path):
    first = run(toy_train, toy_val, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / FILENAME, weights_only=True)
    state["stop_reason"] = None  # what the file holds if the process died right after the last epoch
    torch.save(state, tmp_path / FILENAME)
    untrainable = tiny_net()  # the same initial model, which must not train again
    count_train_batches(untrainable, fail_after=0)

    again = run(toy_train, toy_val, untrainable, checkpoint_dir=tmp_path)

    assert again.stop_reason == "max_epochs" and again.history == first.history
    assert_same_weights(again.state_dict, first.state_dict)


def test_checkpoint_of_another_job_is_replaced_and_a_broken_file_refused(toy_train, toy_val, tmp_path):
    run(toy_train, toy_val, checkpoint_dir=tmp_path / "shared", epochs=1)
    changed = run(toy_train, toy_val, checkpoint_dir=tmp_path / "shared", epochs=1, lr=0.5)
    fresh = run(toy_train, toy_val, checkpoint_dir=tmp_path / "fresh", epochs=1, lr=0.5)
    untimed = lambda history: [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in history]
    assert untimed(changed.history) == untimed(fresh.history)
    assert_same_weights(changed.state_dict, fresh.state_dict)
    tmp_path = tmp_path / "shared"

    (tmp_path / FILENAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{FILENAME}: not a readable training checkpoint"):
        run(toy_train, toy_val, checkpoint_dir=tmp_path, epochs=1)


def _always_malignant() -> nn.Module:
    model = tiny_net()
    head = model[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 5.0]))
    return model


def test_specificity_guard_keeps_the_all_malignant_model_from_being_best(toy_train, toy_val):
    guarded = run(toy_train, toy_val, _always_malignant(), lr=0.0, epochs=5, patience=2)
    unguarded = run(toy_train, toy_val, _always_malignant(), lr=0.0, epochs=5, patience=2, min_specificity=0.0)

    assert guarded.best_metrics["recall"] == 1.0 and guarded.best_metrics["specificity"] == 0.0
    assert guarded.best_epoch is None  # no epoch was eligible
    assert guarded.stopped_early and len(guarded.history) == 3  # guarded epochs never improve
    assert unguarded.best_epoch == 1 and unguarded.stop_reason == "early_stopping"


def test_nan_loss_stops_training(toy_train, toy_val):
    model = tiny_net()
    with torch.no_grad():
        model[-1].bias.fill_(float("nan"))

    result = run(toy_train, toy_val, model)

    assert result.stop_reason == "nan_loss" and result.history == [] and result.best_epoch is None


def test_max_train_batches_caps_every_epoch(toy_train, toy_val):
    model = tiny_net()
    batches = count_train_batches(model)

    result = run(toy_train, toy_val, model, epochs=2, max_train_batches=2)

    assert batches[0] == 2 * 2 and len(result.history) == 2


def test_seven_class_task_monitors_balanced_accuracy(toy_train, toy_val):
    result = run(toy_train, toy_val, tiny_net(num_classes=7), label_key="labels", epochs=2)

    best_row = result.history[result.best_epoch - 1]
    assert best_row["val_balanced_accuracy"] == max(row["val_balanced_accuracy"] for row in result.history)
    assert np.array(result.best_metrics["confusion_matrix"]).sum() == len(toy_val["labels"])
    assert "val_specificity" not in best_row


def test_bf16_on_cpu_trains_channels_last(toy_train, toy_val):
    model = tiny_net()
    result = run(toy_train, toy_val, model, precision="bf16", epochs=1)

    assert np.isfinite(result.history[0]["train_loss"])
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patiance": 3}, r"unknown key\(s\) \['patiance'\]"),
        ({"monitor": "sensitivity"}, "monitor 'sensitivity' is not a validation metric"),
        ({"mode": "up"}, "mode must be 'max' or 'min'"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"device": "tpu"}, "device: expected one of"),
        ({"optimizer": "sgd"}, "optimizer must be one of adam, adamw"),
        ({"lr_schedule": "cosine"}, "lr_schedule must be one of constant, onecycle"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_config_is_refused(toy_train, toy_val, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(toy_train, toy_val, **overrides)


def test_bad_arguments_are_refused(toy_train, toy_val):
    with pytest.raises(ValueError, match="class_weights: expected 2 positive numbers"):
        fit(tiny_net(), toy_train, toy_val, BASE_CONFIG, [1.0], NORMALIZATION)
    with pytest.raises(ValueError, match="label_key: expected one of"):
        fit(tiny_net(), toy_train, toy_val, BASE_CONFIG, None, NORMALIZATION, label_key="malignant")
    with pytest.raises(ValueError, match="val: 'images' must be uint8"):
        fit(tiny_net(), toy_train, {**toy_val, "images": toy_val["images"] / 255}, BASE_CONFIG, None, NORMALIZATION)
    with pytest.raises(ValueError, match="predict_proba: images must be uint8"):
        predict_proba(tiny_net(), toy_val["images"][0], NORMALIZATION, device="cpu")


def test_predict_proba_is_the_softmax_of_the_normalised_input(toy_val):
    model = tiny_net().eval()
    images = toy_val["images"][:5]
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.3) / 0.2

    proba = predict_proba(model, images, NORMALIZATION, batch_size=2, device="cpu")

    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.allclose(proba, torch.softmax(model(x).double(), dim=1).detach().numpy(), atol=1e-6)


def test_with_the_project_cnn_and_augmentation():
    models = pytest.importorskip("dermascreen.models")
    model = models.build_model({"arch": "cnn", "filters": 8, "depth": 2, "dropout": 0.1, "dense": 16,
                                "num_classes": 2, "weights": "none"})
    train, val = toy_split(64, seed=0, size=28), toy_split(32, seed=1, size=28)

    result = fit(model, train, val, {**BASE_CONFIG, "epochs": 2, "augment": {}}, [1.0, 1.0], NORMALIZATION)

    assert len(result.history) == 2 and result.best_metrics["roc_auc"] > 0.8


def test_on_real_dermamnist(real_npz):
    models = pytest.importorskip("dermascreen.models")
    with np.load(real_npz) as raw:
        splits = {name: {"images": raw[f"{name}_images"][:n], "labels": raw[f"{name}_labels"][:n, 0].astype(np.int64)}
                  for name, n in (("train", 256), ("val", 128))}
    for split in splits.values():
        split["binary"] = np.isin(split["labels"], [0, 1, 4]).astype(np.int64)  # akiec, bcc, mel
    normalization = {"mean": [0.7636, 0.5372, 0.5614], "std": [0.1363, 0.1540, 0.1687]}  # SOURCES.md
    model = models.build_model({"arch": "cnn", "filters": 8, "depth": 2, "dropout": 0.1, "dense": 16,
                                "num_classes": 2, "weights": "none"})
    config = {**BASE_CONFIG, "epochs": 1, "augment": {"rotation": 20, "shift": 0.15, "zoom": 0.1}}

    result = fit(model, splits["train"], splits["val"], config, [1.0, 3.0], normalization)

    metrics = result.history[0]
    assert metrics["val_tn"] + metrics["val_fp"] + metrics["val_fn"] + metrics["val_tp"] == 128
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["val_loss"])


def test_other_initial_weights_are_another_job(toy_train, toy_val, tmp_path):
    first = run(toy_train, toy_val, tiny_net(seed=1), checkpoint_dir=tmp_path, epochs=1)
    other_init = run(toy_train, toy_val, tiny_net(seed=2), checkpoint_dir=tmp_path, epochs=1)
    fresh = run(toy_train, toy_val, tiny_net(seed=2), checkpoint_dir=tmp_path / "fresh", epochs=1)
    assert_same_weights(other_init.state_dict, fresh.state_dict)
    assert not all(torch.equal(first.state_dict[k], other_init.state_dict[k]) for k in first.state_dict)


def fine_split(split: dict) -> dict:
    """The toy split with 7-class labels that agree with ``binary``: mel/bcc malignant, nv/bkl benign."""
    index = {name: i for i, name in enumerate(class_names())}
    alternate = np.arange(len(split["binary"])) % 2 == 0
    labels = np.where(split["binary"] == 1, np.where(alternate, index["mel"], index["bcc"]),
                      np.where(alternate, index["nv"], index["bkl"]))
    return {**split, "labels": labels.astype(np.int64)}


def test_seven_class_supervision_trains_the_network_on_labels_and_selects_the_binary_view(toy_train, toy_val):
    models = pytest.importorskip("dermascreen.models")
    torch.manual_seed(0)
    model = models.build_model({"arch": "resnet_cifar", "widths": [8], "blocks": 1, "supervision": "labels"})
    seen = []
    model.net.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]) if module.training else None)
    train, val = fine_split(toy_train), fine_split(toy_val)

    result = run(train, val, model, epochs=4, label_smoothing=0.1)

    assert set(seen) == {7}  # the training steps ran the 7-class network
    assert result.best_metrics["roc_auc"] > 0.9  # evaluated as a binary model, on val["binary"]
    proba = predict_proba(model, val["images"], NORMALIZATION, device="cpu")
    assert binary_metrics(val["binary"], proba[:, 1])["roc_auc"] == pytest.approx(result.best_metrics["roc_auc"])
    # trained on the fine labels: classes absent from train (akiec, df, vasc) get little probability
    x = (torch.from_numpy(val["images"]).permute(0, 3, 1, 2).float() / 255 - 0.3) / 0.2
    with torch.no_grad():
        fine = torch.softmax(model.net(x), dim=1).mean(dim=0)
    assert float(fine[[class_names().index(name) for name in ("akiec", "df", "vasc")]].sum()) < 0.15
    with pytest.raises(ValueError, match="supervision=labels is a binary model"):
        fit(model, train, val, BASE_CONFIG, None, NORMALIZATION, label_key="labels")


def test_onecycle_schedule_runs_per_step_and_resumes_exactly(toy_train, toy_val, tmp_path):
    config = {"epochs": 3, "lr_schedule": "onecycle", "optimizer": "adamw", "weight_decay": 0.01,
              "checkpoint_every_s": 0}
    uninterrupted = run(toy_train, toy_val, checkpoint_dir=tmp_path / "whole", **config)
    lrs = [row["lr"] for row in uninterrupted.history]  # after 6, 12, 18 of 18 steps
    assert lrs[0] > lrs[1] > lrs[2] and lrs[2] < 1e-2 / 50  # warm-up ended within epoch 1, then annealed

    doomed = tiny_net()
    count_train_batches(doomed, fail_after=6 + 2)  # dies inside epoch 2
    with pytest.raises(SimulatedKill):
        run(toy_train, toy_val, doomed, checkpoint_dir=tmp_path / "killed", **config)
    resumed = run(toy_train, toy_val, tiny_net(), checkpoint_dir=tmp_path / "killed", **config)
    assert without_times(resumed.history) == without_times(uninterrupted.history)
    assert_same_weights(resumed.state_dict, uninterrupted.state_dict)
