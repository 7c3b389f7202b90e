"""dermascreen: skin-lesion classifiers on DermaMNIST (MedMNIST v2)."""

__version__ = "0.1.0"
