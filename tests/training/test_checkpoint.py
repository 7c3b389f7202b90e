"""The training checkpoint: which job a state resumes (and why not), how often and what it writes.

Real fits of the project's models on the toy task; the kills of these tests are exceptions raised
inside a training step (tests/test_kill_resume.py kills real processes).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dermascreen.models import build_model
from dermascreen.training import fit
from dermascreen.training.checkpoint import FILENAME, code_digests, describe_model, job_differences, source_digest
from dermascreen.training.engines import ranking_key

from training_toys import (BASE_CONFIG, NORMALIZATION, SimulatedKill, assert_same_weights, count_train_batches,
                           without_times)

CNN = {"arch": "cnn", "filters": 4, "depth": 2, "dense": 8, "dropout": 0.1, "image_size": 8, "weights": "none"}
VIT = {"arch": "vit", "img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2,
       "drop_path": 0.0, "weights": "none"}
BATCHES_PER_EPOCH = 6  # 96 toy images, batches of 16
RESUMED = "resuming from"
NOT_RESUMED = "not resumed, it belongs to another job"


def build(config: dict) -> torch.nn.Module:
    torch.manual_seed(0)  # as the phase runs: the initial weights depend on the seed alone
    return build_model(config)


def run(train, val, config, directory, model=None, **overrides):
    return fit(model or build(config), train, val, {**BASE_CONFIG, "epochs": 2, "checkpoint_every_s": 0, **overrides},
               [1.0, 2.0], NORMALIZATION, checkpoint_dir=directory, model_config=config)


def killed_in_epoch_2(train, val, config, directory) -> None:
    """A run whose state was saved after epoch 1 and that died in epoch 2."""
    doomed = build(config)
    count_train_batches(doomed, fail_after=BATCHES_PER_EPOCH + 2)
    with pytest.raises(SimulatedKill):
        run(train, val, config, directory, doomed)


def restarted(train, val, config, directory, caplog) -> tuple[object, int, str]:
    """The run started again: its result, how many batches it trained, what the checkpoint logged."""
    model = build(config)
    batches = count_train_batches(model)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dermascreen.training"):
        result = run(train, val, config, directory, model)
    return result, batches[0], caplog.text


@pytest.mark.parametrize("config", [CNN, VIT], ids=["cnn", "vit"])
def test_the_same_job_started_again_resumes(toy_train, toy_val, tmp_path, caplog, config):
    killed_in_epoch_2(toy_train, toy_val, config, tmp_path / "state")

    result, batches, log = restarted(toy_train, toy_val, config, tmp_path / "state", caplog)
    uninterrupted = run(toy_train, toy_val, config, tmp_path / "whole")

    assert f"{RESUMED} {tmp_path / 'state' / FILENAME} after epoch 1" in log and NOT_RESUMED not in log
    assert batches == BATCHES_PER_EPOCH  # epoch 2 only
    assert without_times(result.history) == without_times(uninterrupted.history)
    assert_same_weights(result.state_dict, uninterrupted.state_dict)


@pytest.mark.parametrize(("config", "change", "changed_key"), [
    (CNN, {"dropout": 0.3}, "model.config.dropout"),
    (CNN, {"unfreeze": 0}, "model.config.unfreeze"),  # resumed, the optimizer state would not fit
    (VIT, {"img_size": 16}, "model.config.img_size"),  # the input size
    (VIT, {"drop_path": 0.2}, "model.config.drop_path"),
], ids=["dropout", "unfreeze", "input_size", "drop_path"])
def test_a_changed_model_starts_over_and_says_why(toy_train, toy_val, tmp_path, caplog, config, change, changed_key):
    killed_in_epoch_2(toy_train, toy_val, config, tmp_path / "state")
    changed = {**config, **change}

    result, batches, log = restarted(toy_train, toy_val, changed, tmp_path / "state", caplog)
    fresh = run(toy_train, toy_val, changed, tmp_path / "fresh")

    assert NOT_RESUMED in log and changed_key in log and RESUMED not in log
    if "img_size" not in change:  # same shapes, same seed: the weights are not what tells the jobs apart
        assert "initial weights" not in log
    assert batches == 2 * BATCHES_PER_EPOCH  # both epochs, from scratch
    assert without_times(result.history) == without_times(fresh.history)
    assert_same_weights(result.state_dict, fresh.state_dict)


def test_a_model_built_without_config_is_told_apart_by_its_modules(toy_train, toy_val, tmp_path, caplog):
    run(toy_train, toy_val, None, tmp_path, build(CNN), epochs=1)

    model = build({**CNN, "dropout": 0.4})
    with caplog.at_level(logging.WARNING, logger="dermascreen.training"):
        run(toy_train, toy_val, None, tmp_path, model, epochs=1)

    assert NOT_RESUMED in caplog.text and "model.modules" in caplog.text


def test_other_training_settings_are_named_too(toy_train, toy_val, tmp_path, caplog):
    run(toy_train, toy_val, CNN, tmp_path, epochs=1)
    with caplog.at_level(logging.WARNING, logger="dermascreen.training"):
        run(toy_train, toy_val, CNN, tmp_path, epochs=1, lr=0.5, augment={"rotation": 10})

    assert "(changed: settings training.augment, training.augment.rotation, training.lr)" in caplog.text


def test_runtime_keys_may_change_on_resume(toy_train, toy_val, tmp_path, caplog):
    killed_in_epoch_2(toy_train, toy_val, CNN, tmp_path)
    with caplog.at_level(logging.INFO, logger="dermascreen.training"):
        run(toy_train, toy_val, CNN, tmp_path, checkpoint_every_s=60, compile=False, progress=True)

    assert RESUMED in caplog.text


class WithFunction(torch.nn.Module):
    """A module whose repr shows a function, and so its address."""

    def __init__(self):
        super().__init__()
        self.activation = lambda x: x.clamp(min=0)
        self.linear = torch.nn.Linear(2, 2)

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


def test_the_model_description_holds_no_object_address():
    first, second = WithFunction(), WithFunction()
    assert repr(first) != repr(second)  # " at 0x..." differs between objects, and between processes
    assert describe_model(first, None) == describe_model(second, None)


def test_source_digest_ignores_comments_docstrings_and_layout_but_not_code():
    source = 'def f(x):\n    """Double."""\n    return 2 * x  # twice\n'
    same = '# a module comment\n\ndef f(x):\n    """Twice x."""\n\n    return 2*x\n'
    other = 'def f(x):\n    """Double."""\n    return 3 * x\n'

    assert source_digest(source) == source_digest(same)
    assert source_digest(source) != source_digest(other)


def test_code_digests_cover_the_model_and_training_sources(tmp_path):
    """One digest per file; a copy of the package with one changed statement and one changed
    comment differs in that file alone."""
    digests = code_digests()
    assert {"models/cnn.py", "models/vit.py", "training/fit.py", "training/engines.py",
            "evaluation/metrics.py"} <= set(digests)
    assert "evaluation/report.py" not in digests and "pipelines/runs.py" not in digests

    copy = tmp_path / "dermascreen"
    shutil.copytree(Path(sys.modules["dermascreen"].__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    cnn = copy / "models" / "cnn.py"
    cnn.write_text(cnn.read_text() + "\n# a comment changes nothing\n")
    augment = copy / "training" / "augment.py"
    augment.write_text(augment.read_text() + "\nEXTRA = 1\n")
    copied = code_digests(copy)

    assert {name for name in digests if copied[name] != digests[name]} == {"training/augment.py"}


def test_job_differences_name_the_code_data_and_weights():
    job = {"settings": {"training.lr": 0.1}, "code": {"models/cnn.py": "a", "training/fit.py": "b"},
           "data": "d", "initial_weights": "w"}
    other = {"settings": {"training.lr": 0.1}, "code": {"models/cnn.py": "A", "training/fit.py": "b"},
             "data": "D", "initial_weights": "W"}

    assert job_differences(job, other) == "code of models/cnn.py; data (train/val arrays); initial weights"
    assert "an older version wrote it" in job_differences(None, other)


def test_a_long_interval_saves_only_at_the_end(toy_train, toy_val, tmp_path):
    """``checkpoint_every_s`` far above the run's length: a run killed in epoch 3 left no state and
    starts again from epoch 1; a finished run left one."""
    doomed = build(CNN)
    count_train_batches(doomed, fail_after=2 * BATCHES_PER_EPOCH + 2)
    with pytest.raises(SimulatedKill):
        run(toy_train, toy_val, CNN, tmp_path, doomed, epochs=4, checkpoint_every_s=3600)
    assert not (tmp_path / FILENAME).exists()

    model = build(CNN)
    batches = count_train_batches(model)
    result = run(toy_train, toy_val, CNN, tmp_path, model, epochs=4, checkpoint_every_s=3600)

    assert batches[0] == 4 * BATCHES_PER_EPOCH and len(result.history) == 4
    assert torch.load(tmp_path / FILENAME, weights_only=True)["stop_reason"] == "max_epochs"


def test_best_weights_are_written_only_when_the_best_epoch_changes(toy_train, toy_val, tmp_path):
    """Seen from inside the run: at the start of every epoch, the files of the checkpoint folder."""
    model = build(CNN)
    seen: list[dict[str, int]] = []  # file name -> inode (an atomic write makes a new one)
    batches = [0]

    def look(module, args) -> None:
        if module.training and batches[0] % BATCHES_PER_EPOCH == 0:  # an epoch's first batch
            seen.append({path.name: path.stat().st_ino for path in tmp_path.glob("*.pt")})
        batches[0] += module.training

    model.register_forward_pre_hook(look)
    result = run(toy_train, toy_val, CNN, tmp_path, model, epochs=6, lr=0.05, patience=6)

    best_so_far, best = [], None
    for row in result.history:
        metrics = {name.removeprefix("val_"): value for name, value in row.items()}
        key = ranking_key(metrics, "recall", "max", 0.5)
        if key[0] != float("-inf") and (best is None or key > best[0]):
            best = (key, row["epoch"])
        best_so_far.append(None if best is None else best[1])
    assert len(set(best_so_far)) > 2  # the best epoch changed more than once: the test sees something
    for before, after, best_epoch, previous_best in zip(seen, seen[1:], best_so_far, [None, *best_so_far]):
        assert after[FILENAME] != before.get(FILENAME)  # the state: rewritten every epoch (every_s 0)
        best_files = [name for name in after if name.startswith("best_weights.")]
        assert [name.rsplit(".", 2)[-2] for name in best_files] == ([] if best_epoch is None else [f"epoch{best_epoch}"])
        if best_epoch is not None and best_epoch == previous_best:  # unchanged best: the same file, not rewritten
            assert after[best_files[0]] == before[best_files[0]]
    state = torch.load(tmp_path / FILENAME, weights_only=True)
    assert "weights" not in state["best"]  # the state file does not carry a copy of the best weights


def test_a_missing_best_weights_file_is_a_clear_error(toy_train, toy_val, tmp_path):
    assert run(toy_train, toy_val, CNN, tmp_path, min_specificity=0.0).best_epoch is not None
    for path in tmp_path.glob("best_weights.*.pt"):
        path.unlink()

    with pytest.raises(ValueError, match=r"best weights that training_state.pt names are missing .* delete "):
        run(toy_train, toy_val, CNN, tmp_path, min_specificity=0.0)


def test_a_write_killed_for_real_leaves_a_temporary_file_that_the_next_start_removes(toy_train, toy_val,
                                                                                      tmp_path, caplog):
    script = ("import sys, time; from dermascreen.io import atomic_write\n"
              "with atomic_write(sys.argv[1], suffix='.pt') as tmp:\n"
              "    tmp.write_bytes(b'half a checkpoint'); print('writing', flush=True); time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / FILENAME)], stdout=subprocess.PIPE,
                              text=True, env={"PYTHONPATH": str(Path(sys.modules["dermascreen"].__file__).parents[1])})
    assert writer.stdout.readline() == "writing\n"
    writer.kill()  # SIGKILL: no finally, no cleanup
    writer.wait()
    leftovers = list(tmp_path.iterdir())
    assert [path.name.startswith(f".{FILENAME}.") for path in leftovers] == [True]

    with caplog.at_level(logging.INFO, logger="dermascreen.training"):
        run(toy_train, toy_val, CNN, tmp_path, epochs=1)

    assert not leftovers[0].exists() and f"removed {leftovers[0]}, left by a write that was killed" in caplog.text
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]
