"""supervision: labels: a binary model whose p(malignant) is the 7-class network's summed malignant probability."""

from __future__ import annotations

import pytest
import torch

from dermascreen.data.labels import malignant_lookup
from dermascreen.data.medmnist_info import class_names
from dermascreen.models import build_model
from dermascreen.models.supervision import SummedClasses

CONFIG = {"arch": "resnet_cifar", "widths": [8, 16], "blocks": 1, "supervision": "labels"}


def test_probabilities_are_the_summed_softmax_of_the_seven_classes():
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    images = torch.randn(5, 3, 28, 28)

    proba = torch.softmax(model(images), dim=1)  # (5, 2)
    fine = torch.softmax(model.net(images), dim=1)  # (5, 7)

    malignant = [i for i, name in enumerate(class_names()) if name in ("mel", "bcc", "akiec")]
    assert isinstance(model, SummedClasses) and fine.shape == (5, 7)
    torch.testing.assert_close(proba[:, 1], fine[:, malignant].sum(dim=1))
    torch.testing.assert_close(proba.sum(dim=1), torch.ones(5))


def test_the_wrapper_freezes_saves_and_loads_as_its_network(tmp_path):
    torch.manual_seed(0)
    model = build_model({**CONFIG, "unfreeze": 3})
    assert set(model.state_dict()) == {f"net.{key}" for key in model.net.state_dict()}  # no extra buffer
    assert [layer.name for layer in model.keras_layers()] == [layer.name for layer in model.net.keras_layers()]
    # unfreeze 3: the head's layers (avg_pool, dropout, predictions) train, the backbone is frozen
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"net.head.1.weight", "net.head.1.bias"}
    assert model.fine_class_weights([1.0, 3.0]) == [3.0 if m else 1.0 for m in malignant_lookup()]

    path = tmp_path / "model.pt"
    torch.save({"config": CONFIG, "state_dict": model.state_dict()}, path)
    loaded = build_model({**CONFIG, "weights": str(path)})
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"supervision": "fine"}, "supervision='fine': allowed values are binary, labels"),
    ({"num_classes": 7}, "num_classes must be 2"),
])
def test_bad_supervision_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model({**CONFIG, **overrides})
