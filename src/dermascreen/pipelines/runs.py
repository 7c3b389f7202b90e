"""Nodes and pipeline builders shared by the phase1 and phase2 grids.

A grid is a set of independent training runs, each a namespaced modular pipeline
(``<phase>.<run>``), followed by a leaderboard and a selection on validation metrics only.
phase1's grid ranks runs (``grid_pipeline``); phase2's trains each strategy once per seed
(runs ``<strategy>_seed<k>``), ranks strategies on the mean over their seeds and exports the
winner's seed ensemble (``seeded_grid_pipeline``).
"""

from __future__ import annotations

from functools import partial, update_wrapper
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from kedro.pipeline import Pipeline, node  # noqa: E402

from dermascreen.evaluation.metrics import operating_specificity  # noqa: E402
from dermascreen.inference.model import ensemble_checkpoint  # noqa: E402
from dermascreen.models import build_model  # noqa: E402
from dermascreen.training import fit  # noqa: E402
from dermascreen.training.engines import LiveLog  # noqa: E402
from dermascreen.training.device import describe_hardware  # noqa: E402

# Pretraining methods whose encoder a grid run may start from with `weights: <method>`.
PRETRAINED_ENCODERS = ("mae", "umae", "semmae", "automae", "mlo_mae")
LEADERBOARD_METRICS = ("spec_at_recall", "recall", "specificity", "precision", "f1", "f2", "roc_auc", "pr_auc",
                       "accuracy")


def train_run(train_set: dict, val_set: dict, normalization: dict, class_weights: dict,
              spec: dict, training: dict, state_dir: str, init: dict | None = None,
              encoder: dict | None = None, weights_dir: str | None = None, dvclive_dir: str | None = None):
    """Train one run of a grid; return its checkpoint, per-epoch history and summary.

    ``spec``: ``run`` (name), ``model`` (model config), ``lr``, ``batch_size``,
    ``class_weights`` (a strategy name of ``class_weights``) and optionally ``training``: the
    run's own training keys (a recipe such as ``lr_schedule``) over the grid's ``training``. ``init``: a checkpoint to start
    from (phase2 starts from the phase1 winner) instead of ``model.weights``. ``encoder``: the
    pretraining encoder that ``model.weights: <method>`` names (``pretraining.<method>.encoder``).
    The model's ``image_size`` is the side of the training images (the profile's ``image_size``).
    ``weights_dir``: the ImageNet weights directory that ``model.weights: imagenet`` reads.
    ``dvclive_dir``: the grid's DVCLive folder; the run logs its epochs in a DVCLive directory of its
    own, ``<dvclive_dir>/<run>`` (``LiveLog``), an out of its DVC stage ``<phase>_run@<run>`` alone.
    """
    model_config = {**spec["model"], "num_classes": 2, "image_size": data_image_size(spec, train_set)}
    if encoder is not None:  # the encoder's architecture, so that the saved config rebuilds the model
        model_config = {**encoder["config"], **model_config}
    if init is not None:
        model_config["weights"] = "none"  # the init checkpoint supplies every weight
    # Initial weights depend on the run's seed alone, not on what ran before it in the process.
    torch.manual_seed(training["seed"])
    model = build_model({**model_config, "weights": encoder} if encoder is not None else model_config,
                        weights_dir)
    if init is not None:
        model.load_state_dict(init["state_dict"])
    overrides = spec.get("training", {})
    config = {**training, **overrides, "lr": spec["lr"], "batch_size": spec["batch_size"]}
    weights = class_weights[spec["class_weights"]]
    result = fit(model, train_set, val_set, config, weights, normalization, label_key="binary",
                 checkpoint_dir=str(Path(state_dir) / spec["run"]), model_config=model_config,
                 live=None if dvclive_dir is None else LiveLog(Path(dvclive_dir) / spec["run"], spec["run"]))
    checkpoint = {
        "run": spec["run"],
        # Rebuilding needs no download: the state dict holds every weight.
        "config": {**model_config, "weights": "none"},
        "state_dict": result.state_dict,
        "normalization": normalization,
        "training": config,
        "class_weights": weights,
        "hardware": result.hardware,
    }
    summary = {
        "run": spec["run"],
        "model": model_config,
        "init_weights": _init_weights(model_config, init),
        "training": config,
        "training_overrides": overrides,
        "class_weights_name": spec["class_weights"],
        "class_weights": weights,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val_metrics": result.best_metrics,
        "hardware": result.hardware,
    }
    return checkpoint, pd.DataFrame(result.history), summary


def data_image_size(spec: dict, train_set: dict) -> int:
    """The side of the train images, which a model config that names one must match."""
    side = int(train_set["images"].shape[1])
    configured = spec["model"].get("image_size", side)
    if configured != side:
        raise ValueError(f"run {spec['run']}: model image_size {configured} but the train images are "
                         f"{side}x{side}; remove image_size from the model config (it follows the data, "
                         f"set by image_size in conf/<profile>/globals.yml)")
    return side


def _init_weights(model_config: dict, init: dict | None) -> str:
    if init is not None:
        return f"checkpoint of run {init.get('run')}"
    weights = str(model_config.get("weights", "none"))
    return f"pretraining.{weights}.encoder" if weights in PRETRAINED_ENCODERS else weights


def encoder_input(model_config: dict) -> list[str]:
    """The pretraining encoder dataset a model config names with ``weights: <method>``, if any."""
    weights = str(model_config.get("weights", "none"))
    return [f"pretraining.{weights}.encoder"] if weights in PRETRAINED_ENCODERS else []


def plot_learning_curve(history: pd.DataFrame, summary: dict) -> plt.Figure:
    """Loss and validation recall/specificity per epoch, best epoch marked."""
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = history["epoch"]
    for column in ("train_loss", "val_loss"):
        if column in history:
            ax_loss.plot(epochs, history[column], label=column)
    for column in ("val_recall", "val_specificity", "val_spec_at_recall", "val_roc_auc"):
        if column in history:
            ax_metric.plot(epochs, history[column], label=column.removeprefix("val_"))
    for ax in (ax_loss, ax_metric):
        if summary["best_epoch"] is not None:  # None: no epoch passed the specificity guard
            ax.axvline(summary["best_epoch"], color="grey", linestyle=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    ax_loss.set_title(f"{summary['run']}: loss")
    ax_metric.set_title("validation metrics")
    fig.tight_layout()
    return fig


def rank_runs(selection: dict, **summaries: dict) -> pd.DataFrame:
    """Leaderboard sorted by the selection score: eligible runs first, then ``metric``, then
    ``tie_breaker``; validation metrics only.

    Eligible: some epoch passed the training guard (``best_epoch`` set) and the run's validation
    ``operating_specificity`` for ``metric`` reaches ``min_specificity``. Only eligible runs are
    finalists (``select_best``, ``export_selected``).
    """
    _check_selection(selection)
    rows = []
    for summary in summaries.values():
        val = summary["val_metrics"]
        rows.append({
            "run": summary["run"],
            "arch": summary["model"]["arch"],
            "class_weights": summary["class_weights_name"],
            "eligible": _eligible(summary, selection),
            **{f"val_{m}": val.get(m, np.nan) for m in LEADERBOARD_METRICS},
            "best_epoch": summary["best_epoch"],
            "epochs_run": summary["epochs_run"],
            "hardware": describe_hardware(summary["hardware"]),
        })
    board = _ranked(pd.DataFrame(rows), selection, suffix="")
    board["best_epoch"] = board["best_epoch"].astype("Int64")  # None: no epoch passed the guard
    return board


def _check_selection(selection: dict) -> None:
    for key in ("metric", "tie_breaker"):
        if selection[key] not in LEADERBOARD_METRICS:
            raise ValueError(f"selection.{key}: {selection[key]!r} is not a leaderboard metric; choose from "
                             f"{list(LEADERBOARD_METRICS)} (conf/base/globals.yml, binary_selection)")


def _eligible(summary: dict, selection: dict) -> bool:
    """Some epoch passed the training guard and the validation specificity at the metric's
    operating point reaches ``min_specificity``."""
    val = summary["val_metrics"]
    guard = operating_specificity(val, selection["metric"]) if selection["metric"] in val else np.nan
    return bool(summary["best_epoch"] is not None and guard >= selection["min_specificity"])


def _ranked(board: pd.DataFrame, selection: dict, suffix: str) -> pd.DataFrame:
    """Eligible first, then ``val_<metric><suffix>``, then the tie breaker, then the name; ``rank`` added."""
    board = board.sort_values(
        ["eligible", f"val_{selection['metric']}{suffix}", f"val_{selection['tie_breaker']}{suffix}", "run"],
        ascending=[False, False, False, True], na_position="last", kind="mergesort",
    )
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)


def seed_run(strategy: str, seed: int) -> str:
    """The run (namespace, checkpoint and training-state folder) of one strategy's seed."""
    return f"{strategy}_seed{seed}"


def check_seeds(seeds, parameter: str) -> list[int]:
    integers = isinstance(seeds, list) and all(isinstance(k, int) and not isinstance(k, bool) for k in seeds)
    if not integers or not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"{parameter}: {seeds!r} must be a non-empty list of distinct integer seeds, "
                         f"e.g. [42, 43, 44] (conf/<profile>/parameters_{parameter.split('.')[0]}.yml)")
    return seeds


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one seed: no spread measured)."""
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")
    return float(np.mean(array)), std


def rank_strategies(selection: dict, *, members: dict[str, list[str]], **summaries: dict) -> pd.DataFrame:
    """One row per strategy: ``val_<metric>_mean`` and ``_std`` over its seed runs (``members``),
    ranked like ``rank_runs`` on the means; validation metrics only. A strategy is eligible when
    every one of its seed runs is (its ensemble holds them all)."""
    _check_selection(selection)
    rows = []
    for strategy, runs in members.items():
        seeds = [summaries[run] for run in runs]
        first = seeds[0]
        row = {"run": strategy, "arch": first["model"]["arch"], "class_weights": first["class_weights_name"],
               "eligible": all(_eligible(summary, selection) for summary in seeds),
               "seeds": " ".join(str(summary["training"]["seed"]) for summary in seeds)}
        for metric in LEADERBOARD_METRICS:
            row[f"val_{metric}_mean"], row[f"val_{metric}_std"] = _mean_std(
                [summary["val_metrics"].get(metric, np.nan) for summary in seeds])
        row["best_epoch"] = "/".join("-" if s["best_epoch"] is None else str(s["best_epoch"]) for s in seeds)
        row["epochs_run"] = "/".join(str(s["epochs_run"]) for s in seeds)
        row["hardware"] = "; ".join(sorted({describe_hardware(s["hardware"]) for s in seeds}))
        rows.append(row)
    return _ranked(pd.DataFrame(rows), selection, suffix="_mean")


def select_best_strategy(leaderboard: pd.DataFrame, *, members: dict[str, list[str]], **summaries: dict) -> dict:
    """The top strategy: its settings, validation metrics as mean (``val_metrics``) and standard
    deviation (``val_metrics_std``) over seeds, and each seed run's summary; fails if no strategy is eligible."""
    top = leaderboard.iloc[0]
    if not top["eligible"]:
        raise ValueError(
            "no strategy had every seed run reach the minimum validation specificity at its operating point; "
            "train longer or lower selection.min_specificity."
        )
    seeds = [summaries[run] for run in members[top["run"]]]
    names = [key for key, value in seeds[0]["val_metrics"].items() if isinstance(value, (int, float))]
    spread = {name: _mean_std([summary["val_metrics"][name] for summary in seeds]) for name in names}
    return {
        "run": top["run"],
        "seeds": [summary["training"]["seed"] for summary in seeds],
        "model": seeds[0]["model"],
        "class_weights_name": seeds[0]["class_weights_name"],
        "val_metrics": {name: mean for name, (mean, _) in spread.items()},
        "val_metrics_std": {name: std for name, (_, std) in spread.items()},
        "members": {summary["run"]: summary for summary in seeds},
    }


def select_best(leaderboard: pd.DataFrame, **summaries: dict) -> dict:
    """The top run's summary; fails if no run is eligible (passed the specificity guard)."""
    top = leaderboard.iloc[0]
    if not top["eligible"]:
        raise ValueError(
            "no run reached the minimum validation specificity at its operating point; every run is a "
            "degenerate 'call everything malignant' classifier. Train longer or lower selection.min_specificity."
        )
    return summaries[top["run"]]


def best_metrics(best: dict) -> dict[str, float]:
    """The selected run's validation metrics, flat, for ``dvc metrics``; a strategy's are means over
    its seeds, with ``val_<name>_std`` (left out where undefined: one seed)."""
    flat = {f"val_{name}": value for name, value in best["val_metrics"].items() if isinstance(value, (int, float))}
    flat.update({f"val_{name}_std": value for name, value in best.get("val_metrics_std", {}).items()
                 if value == value})
    return flat


def export_selected(leaderboard: pd.DataFrame, **checkpoints: dict) -> dict:
    """The winner's checkpoint."""
    return checkpoints[leaderboard["run"].iloc[0]]


def export_ensemble(leaderboard: pd.DataFrame, *, members: dict[str, list[str]], **checkpoints: dict) -> dict:
    """The winning strategy's seed ensemble (``inference.model.ensemble_checkpoint``)."""
    strategy = leaderboard["run"].iloc[0]
    return ensemble_checkpoint([checkpoints[run] for run in members[strategy]], strategy)


def export_alternatives(leaderboard: pd.DataFrame, *, members: dict[str, list[str]],
                        **checkpoints: dict) -> dict[str, dict]:
    """``{strategy: seed ensemble}`` of the other finalists (eligible strategies), in rank order:
    the real alternatives phase3's McNemar tests compare the winner with. A strategy with a seed
    that never passed the guard is no finalist."""
    finalists = leaderboard.loc[leaderboard["eligible"], "run"].tolist()[1:]
    return {strategy: ensemble_checkpoint([checkpoints[run] for run in members[strategy]], strategy)
            for strategy in finalists}


def leaderboard_markdown(leaderboard: pd.DataFrame, selection: dict, data_provenance: dict,
                         profile: str, *, phase: str) -> str:
    """The leaderboard as markdown; a strategy leaderboard (``rank_strategies``) shows each metric as
    mean ± std over its seeds."""
    kind = "official MedMNIST file" if data_provenance["official"] else "non-official copy"
    seeded = "seeds" in leaderboard
    columns = ["rank", "run", "class_weights", "eligible", *(["seeds"] if seeded else []),
               *[f"val_{m}" for m in LEADERBOARD_METRICS], "best_epoch", "epochs_run"]
    table = leaderboard.copy()
    if seeded:
        for metric in LEADERBOARD_METRICS:
            table[f"val_{metric}"] = [f"{mean:.4f} ± {std:.4f}" for mean, std in
                                      zip(table[f"val_{metric}_mean"], table[f"val_{metric}_std"])]
    table = table[columns]
    header = "| " + " | ".join(columns) + " |"
    ranked_on = ("Ranked on the validation split only, each strategy on the mean over its seed runs (cells: mean "
                 "± sample std over seeds): eligible strategies (in every seed run an epoch passed the training guard, and "
                 if seeded else "Ranked on the validation split only: eligible runs (an epoch passed the training guard, and ")
    lines = [
        f"# {phase} leaderboard",
        "",
        f"Produced by `kedro run --pipelines {phase} --env {profile}` on `{data_provenance['path']}` ({kind}, md5 `{data_provenance['md5']}`).",
        f"{ranked_on}"
        f"validation {_guard_name(selection['metric'])} >= {selection['min_specificity']}) first, then "
        f"validation {selection['metric']}, then {selection['tie_breaker']}. `spec_at_recall` is the best "
        f"specificity at recall >= the target recall, read off the ROC curve. The test split is not read here.",
        f"Trained on (device (its model), precision): {'; '.join(sorted(leaderboard['hardware'].unique()))}.",
        "",
        header,
        "|" + "|".join(" --- " for _ in columns) + "|",
    ]
    for _, row in table.iterrows():
        cells = [f"{v:.4f}" if isinstance(v, float) else ("-" if v is pd.NA else str(v)) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _guard_name(metric: str) -> str:
    return "spec_at_recall" if metric == "spec_at_recall" else "specificity at threshold 0.5"


def plot_leaderboard(leaderboard: pd.DataFrame, selection: dict) -> plt.Figure:
    """Validation recall against specificity per run; marker = architecture, colour = class weights.
    A strategy leaderboard plots the means over seeds with ± std error bars."""
    fig, ax = plt.subplots(figsize=(7, 5))
    markers = dict(zip(sorted(leaderboard["arch"].unique()), "os^Dvp*hX"))
    colours = dict(zip(sorted(leaderboard["class_weights"].unique()), plt.cm.tab10.colors))
    seeded = "seeds" in leaderboard
    for _, row in leaderboard.iterrows():
        x, y = (row["val_specificity_mean"], row["val_recall_mean"]) if seeded else (row["val_specificity"],
                                                                                    row["val_recall"])
        if seeded:
            ax.errorbar(x, y, xerr=row["val_specificity_std"], yerr=row["val_recall_std"], color="grey",
                        linewidth=0.8, zorder=1)
        ax.scatter(x, y, marker=markers[row["arch"]], color=colours[row["class_weights"]], s=60,
                   edgecolor="black", linewidth=0.5, zorder=2)
        ax.annotate(row["run"], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axvline(selection["min_specificity"], color="grey", linestyle="--", label="min specificity")
    for arch, marker in markers.items():
        ax.scatter([], [], marker=marker, color="white", edgecolor="black", label=arch)
    for name, colour in colours.items():
        ax.scatter([], [], marker="s", color=colour, label=name)
    ax.set_xlabel("validation specificity")
    ax.set_ylabel("validation recall (sensitivity)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def bound(func: Callable, **kwargs) -> Callable:
    """``partial`` that keeps the function's name (Kedro and kedro-viz show it)."""
    return update_wrapper(partial(func, **kwargs), func)


def grid_pipeline(phase: str, runs: dict[str, tuple[Callable, list[str]]]) -> Pipeline:
    """One namespaced pipeline ``<phase>.<run>`` per run, then leaderboard, selection, export.

    ``runs[run] = (train, inputs)``: ``train(*inputs)`` returns the run's checkpoint, history
    and summary (see ``train_run``). Inputs are shared datasets and parameters, never namespaced.
    """
    summaries = {run: f"{phase}.{run}.summary" for run in runs}
    checkpoints = {run: f"{phase}.{run}.checkpoint" for run in runs}
    selection = Pipeline([
        node(rank_runs, {"selection": f"params:{phase}.selection", **summaries},
             f"{phase}_leaderboard", name=f"{phase}_rank_runs"),
        node(select_best, {"leaderboard": f"{phase}_leaderboard", **summaries}, f"{phase}_best",
             name=f"{phase}_select_best"),
        node(export_selected, {"leaderboard": f"{phase}_leaderboard", **checkpoints},
             f"{phase}_best_model", name=f"{phase}_export_selected"),
    ])
    return _run_pipelines(phase, runs) + selection + _report_pipeline(phase)


def seeded_grid_pipeline(phase: str, strategies: dict[str, tuple[Callable, list[str]]], seeds: list[int]) -> Pipeline:
    """Each strategy trained once per seed, as run ``<strategy>_seed<k>`` (``train(*inputs, run=, seed=)``,
    see ``grid_pipeline``); strategies ranked on the mean over their seeds; the winner's seed
    ensemble exported (``<phase>_best_model``) and the other finalists' (``<phase>_alternatives``)."""
    members = {strategy: [seed_run(strategy, seed) for seed in seeds] for strategy in strategies}
    runs = {seed_run(strategy, seed): (bound(train, run=seed_run(strategy, seed), seed=seed), inputs)
            for strategy, (train, inputs) in strategies.items() for seed in seeds}
    summaries = {run: f"{phase}.{run}.summary" for run in runs}
    checkpoints = {run: f"{phase}.{run}.checkpoint" for run in runs}
    selection = Pipeline([
        node(bound(rank_strategies, members=members), {"selection": f"params:{phase}.selection", **summaries},
             f"{phase}_leaderboard", name=f"{phase}_rank_strategies"),
        node(bound(select_best_strategy, members=members), {"leaderboard": f"{phase}_leaderboard", **summaries},
             f"{phase}_best", name=f"{phase}_select_best"),
        node(bound(export_ensemble, members=members), {"leaderboard": f"{phase}_leaderboard", **checkpoints},
             f"{phase}_best_model", name=f"{phase}_export_selected"),
        node(bound(export_alternatives, members=members), {"leaderboard": f"{phase}_leaderboard", **checkpoints},
             f"{phase}_alternatives", name=f"{phase}_export_alternatives"),
    ])
    return _run_pipelines(phase, runs) + selection + _report_pipeline(phase)


def _run_pipelines(phase: str, runs: dict[str, tuple[Callable, list[str]]]) -> Pipeline:
    pipelines = []
    for run, (train, inputs) in runs.items():
        pipelines.append(Pipeline(
            [
                node(train, inputs, ["checkpoint", "history", "summary"], name="train"),
                node(plot_learning_curve, ["history", "summary"], "learning_curve",
                     name="plot_learning_curve"),
            ],
            namespace=f"{phase}.{run}",
            inputs={name for name in inputs if not name.startswith("params:")},
            parameters={name for name in inputs if name.startswith("params:")},
        ))
    return sum(pipelines, Pipeline([]))


def _report_pipeline(phase: str) -> Pipeline:
    """Metrics file, markdown leaderboard and its plot."""
    return Pipeline([
        node(best_metrics, f"{phase}_best", f"{phase}_metrics", name=f"{phase}_best_metrics"),
        node(bound(leaderboard_markdown, phase=phase),
             [f"{phase}_leaderboard", f"params:{phase}.selection", "data_provenance", "params:profile"],
             f"{phase}_leaderboard_md", name=f"{phase}_leaderboard_markdown"),
        node(plot_leaderboard, [f"{phase}_leaderboard", f"params:{phase}.selection"],
             f"{phase}_leaderboard_plot", name=f"{phase}_plot_leaderboard"),
    ])
