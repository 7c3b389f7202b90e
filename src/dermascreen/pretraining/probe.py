"""Frozen-encoder probes: k-NN and linear-probe accuracy on validation, a second view of representation
quality that needs no fine-tuning (as MAE papers report it).

Features are the mean-pooled patch tokens the fine-tuned classifier pools too. The linear probe is
scikit-learn's multinomial logistic regression on standardised features (MAE's linear probe puts a
BatchNorm without affine before its linear head: the same standardisation); the k-NN classifier
votes among the 20 nearest training images by cosine similarity, weighted by it (as DINO's k-NN).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dermascreen.models.vit import ViTEncoder
from dermascreen.training.data import normalization_tensors, to_model_input

K_NEIGHBOURS = 20
PROBE_METRICS = ("knn_accuracy", "knn_balanced_accuracy", "linear_accuracy", "linear_balanced_accuracy")


def encoder_features(encoder: ViTEncoder, images_uint8: np.ndarray, normalization: dict,
                     batch_size: int = 256) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, D) float32 mean-pooled patch tokens of the frozen encoder (on its device)."""
    device = next(encoder.parameters()).device
    mean, std = normalization_tensors(normalization, device)
    encoder.eval()
    features = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), batch_size):
            batch = torch.from_numpy(np.asarray(images_uint8[start:start + batch_size])).to(device)
            tokens = encoder(to_model_input(batch, mean, std, channels_last=False))  # (B, 1+N, D)
            features.append(tokens[:, 1:].mean(dim=1).float().cpu())
    return torch.cat(features).numpy()


def probe_scores(encoder: ViTEncoder, train: dict, val: dict, normalization: dict, seed: int = 0) -> dict[str, float]:
    """k-NN and linear-probe accuracy and balanced accuracy on ``val``, fitted on ``train``'s 7 labels."""
    x_train = encoder_features(encoder, train["images"], normalization)
    x_val = encoder_features(encoder, val["images"], normalization)
    y_train, y_val = np.asarray(train["labels"]), np.asarray(val["labels"])
    probes = {
        # fewer neighbours only when train is smaller than K (test-sized splits)
        "knn": KNeighborsClassifier(min(K_NEIGHBOURS, len(y_train)), metric="cosine", weights=_similarity_weights),
        "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)),
    }
    scores: dict[str, float] = {}
    for name, probe in probes.items():
        predicted = probe.fit(x_train, y_train).predict(x_val)
        scores[f"{name}_accuracy"] = float(accuracy_score(y_val, predicted))
        scores[f"{name}_balanced_accuracy"] = float(balanced_accuracy_score(y_val, predicted))
    return scores


def _similarity_weights(distances: np.ndarray) -> np.ndarray:
    """Cosine distance -> similarity, a neighbour's vote (kept positive)."""
    return np.clip(1.0 - distances, 1e-6, None)

