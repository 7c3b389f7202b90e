"""phase3 nodes: pure functions of data and parameters around ``dermascreen.evaluation``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from dermascreen.data.medmnist_info import MALIGNANT, class_names
from dermascreen.evaluation import bootstrap, calibration, mcnemar, model_card, plots, report, thresholds
from dermascreen.inference.model import ensemble_members, model_from_checkpoint, state_dict_fingerprint
from dermascreen.training.fit import predict_proba

REPORT_TITLE = "DermaMNIST malignant-vs-benign screening: final report"
FIGURES = ("threshold_sweep", "confusion", "roc", "pr", "reliability")


def predict_malignant(checkpoint: dict, split: dict, params: dict) -> np.ndarray:
    """p(malignant) (N,) of the checkpoint's model on a split's uint8 images (N, H, W, 3)."""
    model = model_from_checkpoint(checkpoint, f"checkpoint of run {checkpoint.get('run')!r}")
    torch.manual_seed(params["seed"])  # inference is deterministic; this pins any stray randomness
    proba = predict_proba(model, split["images"], checkpoint["normalization"], params["batch_size"],
                          params["device"])
    return np.asarray(proba[:, 1], dtype=np.float64)


def calibrate_threshold(val_set: dict, val_scores: np.ndarray, checkpoint: dict, params: dict) -> dict:
    """Every policy's validation operating point and the configured one, tied to this model's weights."""
    result = thresholds.calibrate_threshold(val_set["binary"], val_scores, params["policy"], params["target_recall"])
    return {**result, "model_run": checkpoint.get("run"),
            "model_fingerprint": state_dict_fingerprint(checkpoint["state_dict"])}


def threshold_sweep(val_set: dict, val_scores: np.ndarray, params: dict) -> pd.DataFrame:
    """The validation sweep on a regular grid, for the figure and ``dvc plots``."""
    grid = np.round(np.arange(0.0, 1.0 + params["sweep_step"] / 2, params["sweep_step"]), 6)
    return thresholds.sweep_table(val_set["binary"], val_scores, grid)


def evaluate_on_test(test_set: dict, test_scores: np.ndarray, threshold: dict, params: dict) -> dict:
    """Every test metric at the calibrated threshold with its stratified bootstrap interval."""
    return bootstrap.bootstrap_intervals(test_set["binary"], test_scores, threshold["threshold"],
                                         params["n_bootstrap"], params["seed"], params["confidence"])


def subtype_results(test_set: dict, test_scores: np.ndarray, threshold: dict, params: dict) -> dict:
    """Recall per malignant subtype and false positive rate per benign subtype on test, with intervals."""
    return bootstrap.subtype_intervals(test_set["labels"], test_scores, threshold["threshold"], class_names(),
                                       MALIGNANT, params["n_bootstrap"], params["seed"], params["confidence"])


def alternatives(phase2_alternatives: dict[str, dict], phase1_best_model: dict) -> dict[str, dict]:
    """The real alternatives to the final model: phase2's other finalists (each strategy's seed
    ensemble) and the phase1 winner (the model phase2 fine-tuned), named ``phase<n>.<run>``."""
    named = {f"phase2.{run}": checkpoint for run, checkpoint in phase2_alternatives.items()}
    named[f"phase1.{phase1_best_model.get('run')}"] = phase1_best_model
    return named


def seed_members(checkpoint: dict) -> dict[str, dict]:
    """``{run: checkpoint}``: each seed model of the final seed ensemble, on its own."""
    return ensemble_members(checkpoint, f"phase2 best model (run {checkpoint.get('run')!r})")


def predict_models(models: dict[str, dict], split: dict, params: dict) -> dict[str, np.ndarray]:
    """p(malignant) of each model on a split."""
    return {name: predict_malignant(checkpoint, split, params) for name, checkpoint in models.items()}


def calibrate_models(val_set: dict, scores: dict[str, np.ndarray], models: dict[str, dict],
                     params: dict) -> dict[str, dict]:
    """Each model's own validation threshold on its (uncalibrated) probabilities, by the same policy
    as the final model's."""
    return {name: calibrate_threshold(val_set, scores[name], models[name], params) for name in models}


def seed_results(test_set: dict, member_scores: dict[str, np.ndarray], member_thresholds: dict[str, dict],
                 members: dict[str, dict], params: dict) -> dict:
    """Each seed model alone on test, at its own validation threshold, with bootstrap intervals
    (``members``), and the mean and sample std of each test estimate over the seeds (``spread``)."""
    results = {}
    for run, scores in member_scores.items():
        threshold = member_thresholds[run]["threshold"]
        results[run] = {"seed": members[run]["training"]["seed"], "threshold": threshold,
                        "intervals": bootstrap.bootstrap_intervals(test_set["binary"], scores, threshold,
                                                                   params["n_bootstrap"], params["seed"],
                                                                   params["confidence"])}
    spread = {}
    for key in next(iter(results.values()))["intervals"]:
        estimates = np.array([entry["intervals"][key]["estimate"] for entry in results.values()], dtype=np.float64)
        spread[key] = {"mean": float(np.mean(estimates)),
                       "std": float(np.std(estimates, ddof=1)) if len(estimates) > 1 else None}
    return {"members": results, "spread": spread}


def compare_with_alternatives(test_set: dict, test_scores: np.ndarray, threshold: dict,
                              alternative_scores: dict[str, np.ndarray], alternative_thresholds: dict[str, dict],
                              params: dict) -> dict:
    """McNemar's test of the final model against each alternative on test decisions, each model at
    its own validation threshold; p-values Holm-corrected over the comparisons."""
    final = (test_scores >= threshold["threshold"]).astype(np.int64)
    comparisons = []
    for name, scores in alternative_scores.items():
        cut = alternative_thresholds[name]["threshold"]
        other = (scores >= cut).astype(np.int64)
        result = mcnemar.mcnemar_test(test_set["binary"], final, other, params["mcnemar_exact_below"])
        comparisons.append({"alternative": name, "threshold": cut, **result})
    for comparison, adjusted in zip(comparisons, mcnemar.holm_adjust([c["p_value"] for c in comparisons])):
        comparison["p_holm"] = adjusted
    return {"correction": "holm", "final_run": threshold.get("model_run"), "comparisons": comparisons}


def fit_calibration(val_set: dict, val_raw_scores: np.ndarray, params: dict) -> dict:
    """The ``params["calibration"]`` calibrator (temperature, isotonic or none), fitted on validation."""
    return calibration.fit_calibrator(val_set["binary"], val_raw_scores, params["calibration"])


def apply_calibration(calibrator: dict, raw_scores: np.ndarray) -> np.ndarray:
    return calibration.apply_calibrator(calibrator, raw_scores)


def calibration_summary(val_set: dict, val_raw: np.ndarray, val_calibrated: np.ndarray, test_set: dict,
                        test_raw: np.ndarray, test_calibrated: np.ndarray, calibrator: dict, params: dict) -> dict:
    """ECE and reliability bins before and after calibration, on validation (where it was fitted)
    and on test; ``ece`` is the calibrated test ECE."""
    summary = {"calibrator": calibrator}
    for split, y, raw, calibrated in (("val", val_set["binary"], val_raw, val_calibrated),
                                      ("test", test_set["binary"], test_raw, test_calibrated)):
        for stage, scores in (("uncalibrated", raw), ("calibrated", calibrated)):
            bins = calibration.reliability_bins(y, scores, params["calibration_bins"])
            summary[f"{split}_{stage}"] = {"ece": calibration.expected_calibration_error(bins),
                                           "bins": bins.to_dict(orient="list")}
    summary["ece"] = summary["test_calibrated"]["ece"]
    return summary


def export_final_model(checkpoint: dict, threshold: dict, calibrator: dict) -> dict:
    """The model ``dermascreen-predict`` uses: phase2's seed ensemble plus its calibrator and the
    operating threshold (on calibrated probabilities), so the file holds everything it needs."""
    return {**checkpoint, "calibration": calibrator,
            "operating_point": {key: threshold[key] for key in ("threshold", "policy", "target_recall", "reason")}}


def curve_data(test_set: dict, test_scores: np.ndarray, threshold: dict) -> tuple[pd.DataFrame, ...]:
    """ROC, PR and per-sample confusion tables for ``dvc plots``."""
    y_true = test_set["binary"]
    return (plots.roc_table(y_true, test_scores), plots.pr_table(y_true, test_scores),
            plots.confusion_table(y_true, test_scores, threshold["threshold"]))


def prediction_table(test_set: dict, test_scores: np.ndarray, test_raw_scores: np.ndarray,
                     member_scores: dict[str, np.ndarray], alternative_scores: dict[str, np.ndarray],
                     threshold: dict) -> pd.DataFrame:
    """Per test image: labels, the final model's calibrated and raw probability (the raw one the
    mean of its seed models'), its decision, each seed model's and every alternative's raw
    probability (for audits)."""
    return pd.DataFrame({
        "index": np.arange(len(test_scores)), "label": test_set["labels"], "binary": test_set["binary"],
        "p_malignant": test_scores, "predicted": (test_scores >= threshold["threshold"]).astype(int),
        "p_malignant_uncalibrated": test_raw_scores,
        **{f"p_malignant_{name}": scores for name, scores in member_scores.items()},
        **{f"p_malignant_{name}": scores for name, scores in alternative_scores.items()},
    })


def make_figures(sweep: pd.DataFrame, roc: pd.DataFrame, pr: pd.DataFrame, test_set: dict,
                 intervals: dict, threshold: dict, calibrated: dict) -> dict[str, Figure]:
    """``{name: figure}`` for the names in ``FIGURES``."""
    point = {key: entry["estimate"] for key, entry in intervals.items()}
    cut = threshold["threshold"]
    curves = {}
    for stage in ("uncalibrated", "calibrated"):
        entry = calibrated[f"test_{stage}"]
        curves[f"{stage} (ECE {entry['ece']:.3f})"] = pd.DataFrame(entry["bins"])
    return {
        "threshold_sweep": plots.threshold_sweep_figure(sweep, cut, threshold["policy"]),
        "confusion": plots.confusion_figure(point, cut),
        "roc": plots.roc_figure(roc, point, cut),
        "pr": plots.pr_figure(pr, point, cut, float(np.mean(test_set["binary"]))),
        "reliability": plots.reliability_figure(curves),
    }


def figure_files(figures: dict[str, Figure]) -> tuple[Figure, ...]:
    """The figures in ``FIGURES`` order, one output (PNG file) each; the report embeds the same objects."""
    return tuple(figures[name] for name in FIGURES)


def flat_metrics(threshold: dict, intervals: dict, subtypes: dict, comparison: dict, calibrated: dict,
                 seeds: dict) -> dict:
    """Flat numeric keys for ``dvc metrics``: test estimates and interval bounds, validation point;
    ``test_*`` are the final model's (the seed ensemble), ``seed<k>_*`` each seed model's and
    ``seeds_test_<metric>_mean``/``_std`` their spread."""
    metrics = {"threshold": threshold["threshold"]}
    chosen = threshold["operating_points"][threshold["policy"]]
    metrics.update({f"val_{key}": chosen[key] for key in ("recall", "precision", "specificity", "f2")})
    for key, entry in intervals.items():
        metrics.update({f"test_{key}": entry["estimate"], f"test_{key}_low": entry["low"],
                        f"test_{key}_high": entry["high"]})
    for name, entry in subtypes.items():  # test_recall_mel, test_fpr_nv, ... with bounds
        key = f"test_{entry['kind']}_{name}"
        metrics.update({key: entry["estimate"], f"{key}_low": entry["low"], f"{key}_high": entry["high"]})
    for entry in seeds["members"].values():
        prefix = f"seed{entry['seed']}"
        metrics[f"{prefix}_threshold"] = entry["threshold"]
        for key in report.REPORTED_METRICS:
            interval = entry["intervals"][key]
            metrics.update({f"{prefix}_test_{key}": interval["estimate"], f"{prefix}_test_{key}_low": interval["low"],
                            f"{prefix}_test_{key}_high": interval["high"]})
    for key in report.REPORTED_METRICS:
        spread = seeds["spread"][key]
        metrics[f"seeds_test_{key}_mean"] = spread["mean"]
        if spread["std"] is not None:  # one seed: no spread
            metrics[f"seeds_test_{key}_std"] = spread["std"]
    for entry in comparison["comparisons"]:
        metrics.update({f"mcnemar_{entry['alternative']}_{key}": entry[key] for key in ("p_value", "p_holm", "b", "c")})
    metrics.update({"ece": calibrated["ece"], "ece_uncalibrated": calibrated["test_uncalibrated"]["ece"],
                    "val_ece": calibrated["val_calibrated"]["ece"],
                    "val_ece_uncalibrated": calibrated["val_uncalibrated"]["ece"]})
    if calibrated["calibrator"]["method"] == "temperature":
        metrics["temperature"] = calibrated["calibrator"]["temperature"]
    return metrics


def build_report(provenance: dict, checkpoint: dict, threshold: dict, intervals: dict, subtypes: dict,
                 comparison: dict, calibrated: dict, seeds: dict, test_set: dict, figures: dict[str, Figure],
                 params: dict, profile: str) -> tuple[str, str]:
    """(markdown, standalone HTML) final report."""
    evidence = _evidence(provenance, checkpoint, threshold, intervals, subtypes, comparison, calibrated, seeds,
                         test_set, params, profile)
    sections = report.report_sections(evidence)
    return (report.render_markdown(REPORT_TITLE, sections, params["figure_paths"]),
            report.render_html(REPORT_TITLE, sections, figures))


def build_model_card(provenance: dict, checkpoint: dict, threshold: dict, intervals: dict, subtypes: dict,
                     comparison: dict, calibrated: dict, seeds: dict, test_set: dict, params: dict,
                     profile: str) -> str:
    """``model_card.md``, written next to the report (sections: ``model_card.CARD_SECTIONS``)."""
    evidence = _evidence(provenance, checkpoint, threshold, intervals, subtypes, comparison, calibrated, seeds,
                         test_set, params, profile)
    return report.render_markdown(model_card.CARD_TITLE, model_card.card_sections(evidence), {})


def _evidence(provenance: dict, checkpoint: dict, threshold: dict, intervals: dict, subtypes: dict,
              comparison: dict, calibrated: dict, seeds: dict, test_set: dict, params: dict, profile: str) -> dict:
    settings = {key: params[key] for key in ("policy", "target_recall", "n_bootstrap", "confidence", "seed",
                                             "calibration", "calibration_bins", "mcnemar_exact_below")}
    return {
        "provenance": provenance, "model": checkpoint, "settings": settings,
        "calibration": threshold, "intervals": intervals, "subtypes": subtypes, "mcnemar": comparison,
        "calibrated": calibrated, "seeds": seeds, "reference": params["reference"], "n_test": int(len(test_set["binary"])),
        "n_malignant": int(np.sum(test_set["binary"])), "profile": profile,
    }
