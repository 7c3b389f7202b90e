"""DermaMNIST facts from ``medmnist.INFO`` (class names, split sizes, urls, md5s).

Labels are mapped by class *name*: MedMNIST's label order is 0 akiec, 1 bcc, 2 bkl, 3 df,
4 mel, 5 nv, 6 vasc, which differs from the id table in the binary design note.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

SPLITS = ("train", "val", "test")

# medmnist.INFO's class names -> the HAM10000 short codes used in reports.
SHORT_NAMES = {
    "actinic keratoses and intraepithelial carcinoma": "akiec",
    "basal cell carcinoma": "bcc",
    "benign keratosis-like lesions": "bkl",
    "dermatofibroma": "df",
    "melanoma": "mel",
    "melanocytic nevi": "nv",
    "vascular lesions": "vasc",
}
MALIGNANT = frozenset({"akiec", "bcc", "mel"})
BINARY_CLASSES = ("benign", "malignant")  # binary label 0, 1


@cache
def dataset_info() -> dict:
    """``medmnist.INFO["dermamnist"]``, read from the package's ``info.py`` alone: ``import medmnist``
    also imports its datasets and evaluator (torch, scikit-learn, SciPy, PIL: about 4 s), which the
    raw-data step, a process of its own, does not otherwise need."""
    package = importlib.util.find_spec("medmnist")
    path = Path(package.submodule_search_locations[0]) / "info.py"
    spec = importlib.util.spec_from_file_location("medmnist.info", path)
    info = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(info)
    return info.INFO["dermamnist"]


@cache
def class_names() -> tuple[str, ...]:
    """Short class names in MedMNIST label order (index = 7-class label)."""
    labels = dataset_info()["label"]
    return tuple(SHORT_NAMES[labels[str(i)]] for i in range(len(labels)))


def split_sizes() -> dict[str, int]:
    return dict(dataset_info()["n_samples"])
