"""The final report carries provenance, configuration, threshold, intervals and the reference."""

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from dermascreen.evaluation import report
from dermascreen.evaluation.bootstrap import bootstrap_intervals
from dermascreen.evaluation.mcnemar import mcnemar_test
from dermascreen.evaluation.thresholds import calibrate_threshold

COMMITTED_HTML = Path(__file__).resolve().parents[2] / "data" / "08_reporting" / "final_report.html"
PROVENANCE = {"path": "data/01_raw/dermamnist_28.npz", "size": 28, "md5": "a032e8b21d33ac007a130d549262064c",
              "official": False, "official_md5": "0744692d530f8e62ec473284d019b0c7", "source": "local file x"}
REFERENCE = {"recall": 0.9158, "precision": 0.3795, "specificity": 0.636, "roc_auc": 0.877}


@pytest.fixture(scope="module")
def evidence():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.25).astype(np.int64)
    p = np.clip(0.4 * y + rng.normal(0.3, 0.15, 200), 0, 1)
    calibration = calibrate_threshold(y, p, "target_recall", 0.9)
    hardware = {"device": "cuda", "device_name": "NVIDIA H200", "precision": "bf16"}
    model = {"run": "CNN_v1_W3", "config": {"arch": "cnn", "filters": 8}, "training": {"lr": 0.001},
             "class_weights": [1.0, 3.0], "normalization": {"mean": [0.7, 0.5, 0.5], "std": [0.1, 0.2, 0.2]},
             "hardware": hardware, "members": [{"run": f"CNN_v1_W3_seed{k}", "seed": k, "hardware": hardware}
                                               for k in (42, 43)]}
    members = {}
    for k, noise in ((42, 0.15), (43, 0.2)):
        scores = np.clip(0.4 * y + rng.normal(0.3, noise, 200), 0, 1)
        members[f"CNN_v1_W3_seed{k}"] = {"seed": k, "threshold": 0.45,
                                         "intervals": bootstrap_intervals(y, scores, 0.45, 200, seed=1)}
    spread = {key: {"mean": 0.5, "std": 0.0125} for key in members["CNN_v1_W3_seed42"]["intervals"]}
    return {
        "provenance": PROVENANCE, "model": model,
        "settings": {"policy": "target_recall", "target_recall": 0.9, "n_bootstrap": 1000, "confidence": 0.95,
                     "seed": 1, "calibration_bins": 10, "mcnemar_exact_below": 25},
        "calibration": calibration, "seeds": {"members": members, "spread": spread},
        "intervals": bootstrap_intervals(y, p, calibration["threshold"], 1000, seed=1),
        "mcnemar": {"correction": "holm", "comparisons": [
            {"alternative": "phase1.CNN_v1_W5", "threshold": 0.4, "p_holm": 0.5,
             **mcnemar_test(y, (p >= 0.5).astype(int), (p >= 0.4).astype(int))}]},
        "subtypes": {"mel": {"kind": "recall", "n": 20, "estimate": 0.85, "low": 0.7, "high": 1.0},
                     "nv": {"kind": "fpr", "n": 150, "estimate": 0.3, "low": 0.25, "high": 0.36}},
        "calibrated": {"calibrator": {"method": "temperature", "temperature": 1.7},
                       **{f"{split}_{stage}": {"ece": ece} for split, stage, ece in (
                           ("val", "uncalibrated", 0.21), ("val", "calibrated", 0.031),
                           ("test", "uncalibrated", 0.2), ("test", "calibrated", 0.0421))}}, "reference": REFERENCE, "n_test": 200, "n_malignant": int(y.sum()), "profile": "quick",
    }


def _figures():
    figures = {}
    for name in report.FIGURE_CAPTIONS:
        figure = Figure(figsize=(1, 1))
        figure.add_subplot().plot([0, 1], [0, 1])
        figures[name] = figure
    return figures


def test_markdown_states_every_required_fact(evidence):
    paths = {name: f"phase3/{name}.png" for name in report.FIGURE_CAPTIONS}
    text = report.render_markdown("Final", report.report_sections(evidence), paths)
    threshold = evidence["calibration"]["threshold"]
    for fact in ("NON-OFFICIAL", PROVENANCE["md5"], PROVENANCE["official_md5"], "CNN_v1_W3", '"filters": 8',
                 '"lr": 0.001', f"**{threshold:.4f}**", "highest threshold whose validation recall reaches 0.90",
                 "target_recall (chosen)", "youden", "1000 stratified", "91.58%", "37.95%", "63.60%", "87.70%",
                 "McNemar", evidence["mcnemar"]["comparisons"][0]["method"], "phase1.CNN_v1_W5", "p (Holm)",
                 "Per-subtype results (test)", "| mel | malignant: recall | 20 | 85.00% [70.00%, 100.00%] |",
                 "| nv | benign: false positive rate | 150 | 30.00% [25.00%, 36.00%] |", "0.0421", "temperature scaling (T = 1.7000)", "validation 0.2100 -> 0.0310",
                 "test 0.2000 -> 0.0421", "(phase3/roc.png)", "profile `quick`",
                 "trained on (device (its model), precision) cuda (NVIDIA H200), bf16.", "seed ensemble of phase2's best strategy `CNN_v1_W3`",
                 "2 models trained with seeds 42, 43", "Seeds (test)", "| CNN_v1_W3_seed43 (seed 43) | 0.4500 |",
                 "| seed models: mean ± std |  | 50.00% ± 1.25% |"):
        assert fact in text, fact
    recall = evidence["intervals"]["recall"]
    assert f"{100 * recall['low']:.2f}%, {100 * recall['high']:.2f}%" in text
    seed43 = evidence["seeds"]["members"]["CNN_v1_W3_seed43"]["intervals"]["recall"]
    assert f"{100 * seed43['estimate']:.2f}% [{100 * seed43['low']:.2f}%, {100 * seed43['high']:.2f}%]" in text


def test_html_is_standalone_with_embedded_png(evidence):
    page = report.render_html("Final <report>", report.report_sections(evidence), _figures())
    assert page.count('src="data:image/png;base64,') == len(report.FIGURE_CAPTIONS)
    assert "http" not in page and "Final &lt;report&gt;" in page
    first = page.split("base64,")[1].split('"')[0]
    assert base64.b64decode(first).startswith(b"\x89PNG")
    assert "<strong>" in page and "<pre>" in page and "<table>" in page


class _References(HTMLParser):
    """Every ``src``/``href`` of a page, and its ``<link>``/``<script>`` tags."""

    def __init__(self):
        super().__init__()
        self.references: list[str] = []
        self.external_tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.references += [value or "" for name, value in attrs if name in ("src", "href")]
        if tag in ("link", "script"):
            self.external_tags.append(tag)


def _files_referenced(page: str) -> list[str]:
    """What a browser would fetch besides the page: anything not a data: URI or an in-page anchor."""
    parser = _References()
    parser.feed(page)
    return parser.external_tags + [ref for ref in parser.references
                                   if not ref.startswith(("data:image/png;base64,", "#"))]


def test_html_references_no_file(evidence):
    page = report.render_html("Final report", report.report_sections(evidence), _figures())
    assert _files_referenced(page) == []


def test_committed_html_report_opens_in_a_fresh_clone():
    """data/08_reporting/final_report.html is in git; its figures (DVC outs) must be inside it."""
    if not COMMITTED_HTML.is_file():
        pytest.skip(f"{COMMITTED_HTML} not generated yet (dvc repro)")
    page = COMMITTED_HTML.read_text()
    assert _files_referenced(page) == []
    assert page.count('src="data:image/png;base64,') == len(report.FIGURE_CAPTIONS)


def test_the_configuration_says_whether_the_model_is_beyond_the_design_note():
    assert report.origin_text({"arch": "cnn"}) == "Its architecture (`cnn`) is one of the design note's grid."
    beyond = report.origin_text({"arch": "resnet_cifar", "widths": [16, 32, 64]})
    assert beyond.startswith("Its architecture (`resnet_cifar`) goes beyond the design note's grid (cnn, resnet50,")
    _, blocks = report.configuration_section({"run": "ResNetC_v2_W0", "config": {"arch": "resnet_cifar"}}, {})
    assert beyond.split(":")[0] in blocks[0]
