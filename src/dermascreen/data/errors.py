"""Errors raised for bad or missing input data."""

from dermascreen.errors import UserError


class DataError(UserError, ValueError):
    """Raw data that cannot be used; the message names the file, the key and the problem."""


class DataAcquisitionError(UserError, RuntimeError):
    """DermaMNIST could not be put in place; the message names the file and says how to fix it."""
