"""Fine-tuning helpers: class weights between none and balanced."""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from dermascreen.pretraining.finetune import balanced_class_weights

LABELS = np.repeat(np.arange(7), [10, 20, 40, 5, 30, 200, 8])


def test_power_one_is_scikit_learns_balanced_and_zero_is_none():
    expected = compute_class_weight("balanced", classes=np.arange(7), y=LABELS)
    assert balanced_class_weights(LABELS, 1.0) == pytest.approx(expected.tolist())
    assert balanced_class_weights(LABELS, 0.5) == pytest.approx(np.sqrt(expected).tolist())
    assert balanced_class_weights(LABELS, 0) is None


def test_a_class_without_images_is_an_error():
    with pytest.raises(ValueError, match="a class has no training image"):
        balanced_class_weights(LABELS[LABELS != 3], 0.5)
