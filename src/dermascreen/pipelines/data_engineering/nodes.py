"""Nodes of the data_engineering pipeline: pure functions of data and parameters."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dermascreen.data.errors import DataError  # noqa: E402
from dermascreen.data.labels import class_counts, class_weights, to_binary  # noqa: E402
from dermascreen.data.medmnist_info import BINARY_CLASSES, SPLITS, class_names  # noqa: E402
from dermascreen.data.validate import validate_raw  # noqa: E402


def validate_raw_data(raw: dict[str, Any], params: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Check the raw arrays (keys, shapes, dtypes, label range, split sizes); pass them on.

    A file from ``DERMAMNIST_NPZ`` was validated before it was copied; this catches a file put
    in ``data/01_raw`` by hand.
    """
    provenance = raw["provenance"]
    try:
        validate_raw(raw["arrays"], params["image_size"], provenance["path"])
    except DataError as error:
        raise DataError(
            f"{error}. Fix: set DERMAMNIST_NPZ to a good DermaMNIST .npz (it replaces this file), "
            "or delete this file to download the official one."
        ) from None
    return raw["arrays"], provenance


def split_dataset(arrays: dict[str, np.ndarray]) -> tuple[dict, dict, dict]:
    """One compact dict per split: uint8 images, 7-class labels and the binary label."""
    splits = []
    for split in SPLITS:
        labels = arrays[f"{split}_labels"].reshape(-1).astype(np.int64)
        splits.append({
            "images": np.ascontiguousarray(arrays[f"{split}_images"], dtype=np.uint8),
            "labels": labels,
            "binary": to_binary(labels),
        })
    return tuple(splits)


def compute_normalization(train_set: dict) -> dict[str, list[float]]:
    """Per-channel mean and std of the train images scaled to [0, 1] (train split only)."""
    pixels = train_set["images"].reshape(-1, train_set["images"].shape[-1]).astype(np.float64) / 255.0
    return {"mean": pixels.mean(axis=0).round(6).tolist(), "std": pixels.std(axis=0).round(6).tolist()}


def compute_class_weights(train_set: dict, params: dict) -> dict[str, list[float]]:
    return class_weights(train_set["binary"], params["class_weight_strategies"])


def describe_classes(arrays: dict[str, np.ndarray]) -> dict:
    """Class counts per split for the 7 classes and the binary label (from the validated raw arrays)."""
    names = class_names()
    stats = {"classes": list(names), "binary_classes": list(BINARY_CLASSES), "splits": {}}
    for split in SPLITS:
        labels = arrays[f"{split}_labels"].reshape(-1)
        counts = class_counts(labels, len(names))
        binary = class_counts(to_binary(labels), 2)
        stats["splits"][split] = {
            "n": int(len(labels)),
            "counts": dict(zip(names, counts)),
            "binary_counts": dict(zip(BINARY_CLASSES, binary)),
            "malignant_fraction": round(binary[1] / len(labels), 4),
        }
    return stats


def plot_class_counts(class_statistics: dict) -> plt.Figure:
    """Bar charts of class counts per split, 7-class (log scale) and binary."""
    fig, (ax7, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    for ax, key, names in ((ax7, "counts", class_statistics["classes"]),
                           (ax2, "binary_counts", class_statistics["binary_classes"])):
        x = np.arange(len(names))
        width = 0.8 / len(SPLITS)
        for i, split in enumerate(SPLITS):
            counts = [class_statistics["splits"][split][key][name] for name in names]
            ax.bar(x + (i - 1) * width, counts, width, label=split)
        ax.set_xticks(x, names)
        ax.set_ylabel("images")
    ax7.set_yscale("log")
    ax7.set_title("7-class counts per split (log scale)")
    ax2.set_title("binary counts per split")
    ax7.legend()
    fig.tight_layout()
    return fig


def plot_samples(train_set: dict, params: dict) -> plt.Figure:
    """A grid of random train images per class (seeded)."""
    rng = np.random.default_rng(params["seed"])
    names = class_names()
    per_class = params["samples_per_class"]
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class * 0.9, len(names) * 0.95))
    for row, name in enumerate(names):
        indices = np.flatnonzero(train_set["labels"] == row)
        chosen = rng.choice(indices, size=min(per_class, len(indices)), replace=False)
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(train_set["images"][chosen[col]])
        axes[row][0].set_title(name, loc="left", fontsize=8)
    fig.suptitle("DermaMNIST train samples per class")
    return fig


def render_data_report(class_statistics: dict, data_provenance: dict, normalization: dict,
                       class_weights: dict, profile: str) -> str:
    """Markdown data report; figures sit beside it in ``data/``."""
    names = class_statistics["classes"]
    kind = "official MedMNIST file" if data_provenance["official"] else "**non-official copy**"
    lines = [
        "# DermaMNIST data report",
        "",
        f"Data file: `{data_provenance['path']}` ({kind}, md5 `{data_provenance['md5']}`; "
        f"official md5 `{data_provenance['official_md5']}`), {data_provenance['size']}x"
        f"{data_provenance['size']}, from {data_provenance['source']}.",
        f"Produced by `kedro run --pipelines data_engineering --env {profile}`.",
        "",
        "## Class counts (7 classes, MedMNIST label order)",
        "",
        "| split | n | " + " | ".join(names) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for split, stats in class_statistics["splits"].items():
        lines.append(f"| {split} | {stats['n']} | " + " | ".join(str(stats["counts"][n]) for n in names) + " |")
    lines += [
        "",
        "## Binary labels (malignant = akiec, bcc, mel, mapped by class name)",
        "",
        "| split | malignant | benign | malignant fraction |",
        "| --- | ---: | ---: | ---: |",
    ]
    for split, stats in class_statistics["splits"].items():
        b = stats["binary_counts"]
        lines.append(f"| {split} | {b['malignant']} | {b['benign']} | {stats['malignant_fraction']:.3f} |")
    lines += [
        "",
        "## Normalisation (train split only, images scaled to [0, 1])",
        "",
        f"mean {', '.join(f'{v:.4f}' for v in normalization['mean'])}; "
        f"std {', '.join(f'{v:.4f}' for v in normalization['std'])}",
        "",
        "## Class weights [benign, malignant]",
        "",
        *[f"- {name}: {', '.join(f'{w:.4g}' for w in weights)}" for name, weights in class_weights.items()],
        "",
        "![class counts](data/class_counts.png)",
        "",
        "![samples](data/samples.png)",
        "",
    ]
    return "\n".join(lines)
