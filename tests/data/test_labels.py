import numpy as np
import pytest

from dermascreen.data.labels import class_weights, malignant_lookup, to_binary
from dermascreen.data.medmnist_info import class_names


def test_class_names_follow_medmnist_label_order():
    assert class_names() == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def test_malignant_is_akiec_bcc_mel_by_name():
    # The binary design note's id table (mel=1, bcc=3, akiec=4) is wrong for MedMNIST's order.
    assert malignant_lookup().tolist() == [1, 1, 0, 0, 1, 0, 0]
    assert to_binary(np.array([[0], [3], [4], [6]])).tolist() == [[1], [0], [1], [0]]


def test_class_weight_strategies():
    binary = np.array([0] * 80 + [1] * 20)
    weights = class_weights(binary, {"W0": None, "W3": {0: 1, 1: 3}, "W5": {"0": 1, "1": 5},
                                     "balanced": "balanced"})
    assert weights["W0"] == [1.0, 1.0]
    assert weights["W3"] == [1.0, 3.0]
    assert weights["W5"] == [1.0, 5.0]
    # n / (k * n_c): 100 / (2 * 80), 100 / (2 * 20)
    assert weights["balanced"] == pytest.approx([0.625, 2.5])


def test_unknown_class_weight_strategy_is_rejected():
    with pytest.raises(ValueError, match="strategy 'W9'"):
        class_weights(np.array([0, 1]), {"W9": "double"})
