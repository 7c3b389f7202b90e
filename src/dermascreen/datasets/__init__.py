"""Kedro dataset classes for the project's artifacts (all writes are atomic)."""

from dermascreen.datasets.dermamnist_dataset import DermaMNISTDataset
from dermascreen.datasets.files import CSVDataset, FigureDataset, JSONDataset, TextDataset
from dermascreen.datasets.npz_dataset import NpzDataset
from dermascreen.datasets.torch_dataset import TorchDataset

__all__ = [
    "CSVDataset", "DermaMNISTDataset", "FigureDataset", "JSONDataset", "NpzDataset",
    "TextDataset", "TorchDataset",
]
