"""The final report: one document model rendered as markdown and as standalone HTML.

``report_sections`` turns the phase3 evidence into sections of paragraphs, tables and figure
references; ``render_markdown`` links the figures' PNG files, ``render_html`` embeds them as
base64 PNG so the HTML file is self-contained.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass

from matplotlib.figure import Figure

from dermascreen.training.device import describe_hardware

REPORTED_METRICS = ("recall", "precision", "specificity", "f1", "f2", "accuracy", "roc_auc", "pr_auc")
CONFUSION_KEYS = ("tp", "fn", "tn", "fp", "tpr", "fnr", "tnr", "fpr")
# The design note's binary grid: its custom CNN and three ImageNet backbones (conf/base's `runs`).
DESIGN_NOTE_ARCHS = ("cnn", "resnet50", "vgg16", "efficientnet_b0")
FIGURE_CAPTIONS = {
    "threshold_sweep": "Validation recall, precision and specificity against the threshold.",
    "confusion": "Test confusion matrix at the chosen threshold.",
    "roc": "Test ROC curve, chosen operating point marked.",
    "pr": "Test precision-recall curve, chosen operating point marked.",
    "reliability": "Reliability diagram of p(malignant) on test, before and after calibration.",
}


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class FigureRef:
    name: str


Section = tuple[str, list]  # (title, [str paragraph | Table | FigureRef])


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100.0 * value:.2f}%"


def _interval(entry: dict, percent: bool = True) -> str:
    fmt = _pct if percent else (lambda v: f"{v:.0f}")
    return f"{fmt(entry['estimate'])} [{fmt(entry['low'])}, {fmt(entry['high'])}]"


def _json_block(value: dict) -> str:
    return "```\n" + json.dumps(value, indent=2, sort_keys=True, default=str) + "\n```"


def provenance_section(provenance: dict, profile: str) -> Section:
    kind = "the official MedMNIST file" if provenance.get("official") else "a NON-OFFICIAL copy"
    text = (f"Produced by `dvc repro` (or `kedro run --pipelines data_engineering,phase1,phase2,phase3 "
            f"--env {profile}`), profile `{profile}`. Data: `{provenance.get('path')}`, {kind} ({provenance.get('size')}x{provenance.get('size')}), "
            f"md5 `{provenance.get('md5')}` (official md5 `{provenance.get('official_md5')}`), "
            f"obtained from {provenance.get('source')}.")
    if not provenance.get("official"):
        text += " Numbers from a non-official copy are close to, not equal to, numbers on the official file."
    return "Data provenance", [text]


def _trained_on(checkpoint: dict) -> str:
    used = checkpoint.get("hardware")
    return describe_hardware(used) if used else "not recorded"


def ensemble_text(model: dict) -> str:
    """What the final model is: phase2's best strategy as a seed ensemble."""
    members = model.get("members", [])
    seeds = ", ".join(str(member["seed"]) for member in members)
    return (f"the seed ensemble of phase2's best strategy `{model.get('run')}`: the mean p(malignant) of "
            f"{len(members)} models trained with seeds {seeds}")


def origin_text(config: dict) -> str:
    """Whether the model's architecture is one of the design note's grid or an entry this project added."""
    arch = config.get("arch")
    if arch in DESIGN_NOTE_ARCHS:
        return f"Its architecture (`{arch}`) is one of the design note's grid."
    return (f"Its architecture (`{arch}`) goes beyond the design note's grid ({', '.join(DESIGN_NOTE_ARCHS)}): "
            "an entry this project added, chosen on validation (docs/results.md, phase1).")


def configuration_section(model: dict, settings: dict) -> Section:
    blocks = [f"Final model: {ensemble_text(model)}, trained on (device (its model), precision) "
              f"{_trained_on(model)}. {origin_text(model.get('config') or {})} Everything that "
              "rebuilds and explains it, as stored in its checkpoint (training settings without the seed, "
              "shared by the seeds):"]
    for key in ("config", "training", "class_weights", "normalization"):
        blocks.append(f"**{key}**\n\n{_json_block(model.get(key))}")
    blocks.append(f"phase3 settings:\n\n{_json_block(settings)}")
    return "Configuration", blocks


def threshold_section(calibration: dict) -> Section:
    rows = []
    for policy, point in calibration["operating_points"].items():
        mark = " (chosen)" if policy == calibration["policy"] else ""
        rows.append([policy + mark, f"{point['threshold']:.4f}", _pct(point["recall"]), _pct(point["precision"]),
                     _pct(point["specificity"]), f"{point['f2']:.4f}", point["reason"]])
    why = (f"Policy `{calibration['policy']}` gives threshold **{calibration['threshold']:.4f}**: "
           f"{calibration['reason']}. It was chosen on the validation split only; the test split was "
           "scored once, at this threshold.")
    header = ["policy", "threshold", "val recall", "val precision", "val specificity", "val F2", "rule"]
    return "Decision threshold", [why, Table(header, rows), FigureRef("threshold_sweep")]


def test_section(intervals: dict, settings: dict, n_test: int, n_malignant: int) -> Section:
    confidence = f"{100 * settings['confidence']:.0f}%"
    intro = (f"One evaluation on the test split ({n_test} images, {n_malignant} malignant). "
             f"Intervals: {confidence} percentile intervals over {settings['n_bootstrap']} stratified "
             f"bootstrap resamples (seed {settings['seed']}).")
    metric_rows = [[key, _interval(intervals[key])] for key in REPORTED_METRICS]
    count_rows = [[key, _interval(intervals[key], percent=key in ("tpr", "fnr", "tnr", "fpr"))]
                  for key in CONFUSION_KEYS]
    return "Test results", [intro, Table(["metric", f"estimate [{confidence} CI]"], metric_rows),
                            Table(["confusion", f"estimate [{confidence} CI]"], count_rows),
                            FigureRef("confusion"), FigureRef("roc"), FigureRef("pr")]


SEED_METRICS = ("recall", "specificity", "precision", "roc_auc", "pr_auc")


def seeds_section(seeds: dict, intervals: dict, threshold: dict, settings: dict) -> Section:
    """The final ensemble and each of its seed models on test, and the spread over seeds."""
    confidence = f"{100 * settings['confidence']:.0f}%"
    text = (f"The final model averages the probabilities of its seed models. Each seed model alone on test, "
            f"at its own validation threshold (same policy, on its uncalibrated probability), with {confidence} "
            f"bootstrap intervals as above; the last row is the mean ± sample standard deviation of the seed "
            "models' estimates: the spread due to the training seed, which the intervals (test sampling) do not cover.")
    header = ["model", "threshold", *SEED_METRICS]
    rows = [["ensemble (final, calibrated)", f"{threshold['threshold']:.4f}",
             *(_interval(intervals[key]) for key in SEED_METRICS)]]
    for run, entry in seeds["members"].items():
        rows.append([f"{run} (seed {entry['seed']})", f"{entry['threshold']:.4f}",
                     *(_interval(entry["intervals"][key]) for key in SEED_METRICS)])
    rows.append(["seed models: mean ± std", "", *(_spread(seeds["spread"][key]) for key in SEED_METRICS)])
    return "Seeds (test)", [text, Table(header, rows)]


def _spread(entry: dict) -> str:
    std = "n/a" if entry["std"] is None else _pct(entry["std"])
    return f"{_pct(entry['mean'])} ± {std}"


def subtype_section(subtypes: dict, settings: dict) -> Section:
    confidence = f"{100 * settings['confidence']:.0f}%"
    text = ("What a screening user needs per lesion type, at the chosen threshold: the recall of each "
            "malignant subtype (share of its lesions flagged malignant) and the false positive rate of "
            f"each benign subtype (share of its lesions flagged malignant), with {confidence} bootstrap "
            "intervals (each subtype's test lesions resampled on their own). Small subtypes have wide intervals.")
    rows = [[name, "malignant: recall" if entry["kind"] == "recall" else "benign: false positive rate",
             str(entry["n"]), _interval(entry)] for name, entry in subtypes.items()]
    return "Per-subtype results (test)", [text, Table(["subtype", "measure", "n", f"estimate [{confidence} CI]"], rows)]


def comparison_section(intervals: dict, reference: dict) -> Section:
    rows = []
    for key, value in reference.items():
        entry = intervals[key]
        inside = "yes" if entry["low"] <= value <= entry["high"] else "no"
        rows.append([key, _pct(entry["estimate"]), _pct(value),
                     f"{100 * (entry['estimate'] - value):+.2f} pp", inside])
    text = ("The seed pipeline's reference test result. A reference value inside our interval means "
            "the difference is within resampling noise of this test split.")
    return "Comparison with the seed's reference", [
        text, Table(["metric", "this model", "reference", "difference", "reference inside CI"], rows)]


def calibration_text(calibrated: dict, n_bins: int) -> str:
    calibrator = calibrated["calibrator"]
    how = {"temperature": f"temperature scaling (T = {calibrator.get('temperature', float('nan')):.4f})",
           "isotonic": "isotonic regression", "none": "no recalibration"}[calibrator["method"]]
    return (f"Calibration of p(malignant): {how}, fitted on validation; the threshold is chosen on the "
            f"calibrated validation probabilities and the exported model applies the same map. Expected "
            f"calibration error ({n_bins} equal-width bins), before -> after: validation "
            f"{calibrated['val_uncalibrated']['ece']:.4f} -> {calibrated['val_calibrated']['ece']:.4f}, test "
            f"{calibrated['test_uncalibrated']['ece']:.4f} -> {calibrated['test_calibrated']['ece']:.4f}.")


def significance_section(mcnemar: dict, calibrated: dict, n_bins: int) -> Section:
    test = ("McNemar's test on test decisions, the final model against each real alternative (phase2's "
            "other finalists, i.e. the seed ensembles of the strategies whose every seed run passed the validation "
            "guard, and the phase1 winner it was fine-tuned from), each model at its own validation threshold. b: only the final model right, "
            "c: only the alternative right. p-values Holm-corrected over the comparisons.")
    rows = [[c["alternative"], f"{c['threshold']:.4f}", str(c["b"]), str(c["c"]), c["method"],
             f"{c['statistic']:.3f}", f"{c['p_value']:.4g}", f"{c['p_holm']:.4g}"] for c in mcnemar["comparisons"]]
    table = Table(["alternative", "its threshold", "b", "c", "method", "statistic", "p", "p (Holm)"], rows)
    return "Model comparison and calibration", [test, table, calibration_text(calibrated, n_bins),
                                                FigureRef("reliability")]


def report_sections(evidence: dict) -> list[Section]:
    """All sections from the phase3 evidence (see ``pipelines.phase3.nodes.build_report``)."""
    return [
        provenance_section(evidence["provenance"], evidence["profile"]),
        configuration_section(evidence["model"], evidence["settings"]),
        threshold_section(evidence["calibration"]),
        test_section(evidence["intervals"], evidence["settings"], evidence["n_test"], evidence["n_malignant"]),
        seeds_section(evidence["seeds"], evidence["intervals"], evidence["calibration"], evidence["settings"]),
        subtype_section(evidence["subtypes"], evidence["settings"]),
        comparison_section(evidence["intervals"], evidence["reference"]),
        significance_section(evidence["mcnemar"], evidence["calibrated"], evidence["settings"]["calibration_bins"]),
    ]


def render_markdown(title: str, sections: list[Section], figure_paths: dict[str, str]) -> str:
    """Markdown; figures as links to ``figure_paths[name]`` (relative to the report)."""
    lines = [f"# {title}", ""]
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, Table):
                lines.append("| " + " | ".join(block.header) + " |")
                lines.append("| " + " | ".join("---" for _ in block.header) + " |")
                lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            elif isinstance(block, FigureRef):
                lines.append(f"![{FIGURE_CAPTIONS[block.name]}]({figure_paths[block.name]})")
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines)


def figure_png_base64(figure: Figure, dpi: int = 110) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(title: str, sections: list[Section], figures: dict[str, Figure]) -> str:
    """A self-contained HTML page: figures embedded as base64 PNG, no external resources."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, blocks in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                               for row in block.rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, FigureRef):
                data = figure_png_base64(figures[block.name])
                caption = html.escape(FIGURE_CAPTIONS[block.name])
                body.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{caption}</figcaption></figure>")
            else:
                body.append(_paragraph_html(block))
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em}"
             "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _paragraph_html(text: str) -> str:
    """Paragraphs carry only ``**bold**``, `` `code` `` and fenced blocks: enough for this report."""
    if "```" in text:
        before, code, after = text.split("```", 2)
        return _paragraph_html(before) + f"<pre>{html.escape(code.strip())}</pre>" + (
            _paragraph_html(after) if after.strip() else "")
    escaped = html.escape(text.strip())
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    escaped = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    return f"<p>{escaped}</p>" if escaped else ""
