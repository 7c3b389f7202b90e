"""7-class supervision for a binary classifier: p(malignant) = the sum of the malignant classes' probabilities.

``SummedClasses`` wraps a 7-class network (``net``). Its forward gives 2-class logits
``[logsumexp(benign logits), logsumexp(malignant logits)]``, whose softmax is exactly
``(sum of benign probabilities, sum of malignant probabilities)`` of the 7-class softmax, so
everything that reads a binary model (evaluation, phase2, phase3, inference, the checkpoint
format) reads this one unchanged. ``fit`` trains ``net`` on the 7 labels (docs/training.md):
the 7 classes are a richer target than their union, and the network learns features for each
lesion type (MedMNIST's own baselines are trained this way).

Malignant classes are found by name (``data.labels.malignant_lookup``: mel, bcc, akiec).
"""

from __future__ import annotations

import torch
from torch import nn

from dermascreen.data.labels import malignant_lookup
from dermascreen.models.keras_layers import KerasLayer
from dermascreen.models.layers import backbone_of

SUPERVISIONS = ("binary", "labels")


def num_labels() -> int:
    return len(malignant_lookup())


class SummedClasses(nn.Module):
    """(B, 3, H, W) -> 2-class logits (B, 2); ``net``: the 7-class network (B, 3, H, W) -> (B, 7)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        # not persistent: the state dict stays the network's, and the lookup comes from the class names
        self.register_buffer("malignant", torch.from_numpy(malignant_lookup()).bool(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images)  # (B, 7)
        benign = torch.logsumexp(logits[:, ~self.malignant], dim=1)  # (B,)
        malignant = torch.logsumexp(logits[:, self.malignant], dim=1)  # (B,)
        return torch.stack([benign, malignant], dim=1)  # (B, 2)

    @property
    def backbone(self) -> nn.Module:  # what ``set_trainable`` freezes
        return backbone_of(self.net)

    def keras_layers(self) -> list[KerasLayer]:
        """The network's Keras layers, named in this model (``net.`` prefix)."""
        return [KerasLayer(layer.name, layer.kind, tuple(f"net.{t}" for t in layer.targets))
                for layer in self.net.keras_layers()]

    def fine_class_weights(self, binary_weights: list[float]) -> list[float]:
        """Binary ``[w_benign, w_malignant]`` as one weight per fine class, by malignancy."""
        return [float(binary_weights[int(m)]) for m in self.malignant.cpu()]
