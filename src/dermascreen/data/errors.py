"""Errors raised for bad or missing input data."""


class DataError(ValueError):
    """Raw data that cannot be used; the message names the file, the key and the problem."""


class DataAcquisitionError(RuntimeError):
    """DermaMNIST could not be found locally nor downloaded; the message says how to provide it."""
