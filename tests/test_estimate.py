"""The start-of-run estimate: every training job of a profile, timed for real, times its size."""

import pytest

from project_helpers import load_config
from dermascreen.estimate import Job, expected_seconds, jobs, table


def test_expected_seconds_counts_training_and_validation_steps_of_every_run():
    job = Job("phase1", "toy", count=3, epochs=4, batches_per_epoch=55, val_batches=9, step=lambda: 0.5)
    assert expected_seconds(job) == pytest.approx(3 * 4 * (55 + 9 / 3) * 0.5)


def test_every_training_job_of_the_quick_profile_is_counted_with_its_size():
    parameters = load_config("quick", "parameters")
    found = {(job.stage, job.label): job for job in jobs(parameters, {"phase1", "phase2", "pretraining"})}
    phase1 = parameters["phase1"]
    assert {label for stage, label in found if stage == "phase1"} == set(phase1["runs"])
    assert {label for stage, label in found if stage == "phase2"} == set(parameters["phase2"]["runs"])
    finetune = parameters["pretraining"]["finetune"]
    vit = found[("pretraining", "ViT fine-tuning (6 encoders)")]
    assert vit.count == 6 * len(finetune["seeds"]) and vit.epochs == finetune["training"]["epochs"]
    assert vit.batches_per_epoch == 55 and vit.val_batches == 8  # 7007 and 1003 images in batches of 128
    assert found[("pretraining", "mlo_mae pretraining")].batches_per_epoch == 110  # its own batch of 64
    assert found[("pretraining", "CNN reference")].count == len(finetune["seeds"])
    assert found[("pretraining", "mae pretraining")].count == 1  # quick: one pretraining seed


def test_pretraining_is_counted_once_per_pretraining_seed():
    parameters = load_config("base", "parameters")
    found = {(job.stage, job.label): job for job in jobs(parameters, {"pretraining"})}
    seeds = len(parameters["pretraining"]["finetune"]["seeds"])
    assert parameters["pretraining"]["shared"]["pretrain_seeds"] == [42, 43, 44]
    assert all(found[("pretraining", f"{m} pretraining")].count == 3 for m in ("mae", "semmae", "mlo_mae"))
    assert found[("pretraining", "ViT fine-tuning (16 encoders)")].count == 16 * seeds  # 1 + 5 methods x 3
    assert found[("pretraining", "CNN reference")].count == seeds


def test_the_tiny_profile_is_calibrated_on_this_machine_and_tabulated():
    parameters = load_config("tiny", "parameters")
    found = jobs(parameters, {"phase1", "pretraining"})
    assert all(job.step() > 0 for job in found)  # real steps, timed
    text = table(found)
    assert "| **phase1** | all |" in text and "| **pretraining** | all |" in text and "| **total** |" in text
    assert "phase2" not in text
