"""7-class and binary (malignant vs benign) labels, and class-weight strategies."""

from __future__ import annotations

import numpy as np

from dermascreen.data.medmnist_info import MALIGNANT, class_names


def malignant_lookup() -> np.ndarray:
    """Array ``lookup[class_id] -> 1 if malignant else 0``, built from the class names."""
    names = class_names()
    missing = MALIGNANT - set(names)
    if missing:
        raise ValueError(f"medmnist.INFO has no class named {sorted(missing)}")
    return np.array([int(name in MALIGNANT) for name in names], dtype=np.int64)


def to_binary(labels: np.ndarray) -> np.ndarray:
    """Map 7-class labels (any shape) to 0 benign / 1 malignant."""
    return malignant_lookup()[np.asarray(labels, dtype=np.int64)]


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


def class_weights(binary_train_labels: np.ndarray, strategies: dict) -> dict[str, list[float]]:
    """Per-class loss weights ``[w_benign, w_malignant]`` for each named strategy.

    A strategy is either an explicit mapping ``{0: w0, 1: w1}`` (W0/W3/W5 of the design note;
    ``null`` means unweighted) or ``"balanced"``: inverse frequency, n / (k * n_c), the same
    formula as scikit-learn's ``compute_class_weight("balanced")``, from the train split only.
    """
    counts = np.bincount(np.asarray(binary_train_labels, dtype=np.int64), minlength=2)
    weights = {}
    for name, spec in strategies.items():
        if spec is None:
            weights[name] = [1.0, 1.0]
        elif spec == "balanced":
            if (counts == 0).any():
                raise ValueError("balanced class weights need both classes in the train split")
            weights[name] = (counts.sum() / (len(counts) * counts)).astype(float).tolist()
        elif isinstance(spec, dict):
            weights[name] = [float(spec.get(0, spec.get("0", 1.0))), float(spec.get(1, spec.get("1", 1.0)))]
        else:
            raise ValueError(f"class-weight strategy {name!r}: expected null, 'balanced' or {{0: w, 1: w}}, got {spec!r}")
    return weights
