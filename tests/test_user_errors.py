"""A mistake the user can fix ends `kedro run` with its message; anything else keeps its traceback."""

from __future__ import annotations

import sys

from kedro.io import DatasetError

from dermascreen.data.errors import DataAcquisitionError, DataError
from dermascreen.errors import UserError, find_user_error
from dermascreen.hooks import UserErrorHook


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def wrapped_twice(error: Exception) -> DatasetError:
    """As Kedro reports a dataset's load error: a DatasetError from a DatasetError from the error."""
    try:
        try:
            raise DatasetError("Failed while loading data from dataset X") from error
        except DatasetError as inner:
            raise DatasetError("dermamnist_raw: Failed while loading") from inner
    except DatasetError as outer:
        return outer


def test_data_errors_are_user_errors_found_through_kedro_wrappers():
    acquisition = DataAcquisitionError("DERMAMNIST_NPZ file refused: x.npz: ... Fix: ...")
    assert isinstance(DataError("x"), (UserError, ValueError))
    assert find_user_error(wrapped_twice(acquisition)) is acquisition
    assert find_user_error(raised(KeyError("a bug"))) is None
    assert find_user_error(wrapped_twice(KeyError("a bug"))) is None


def test_hook_prints_a_user_error_alone_and_leaves_other_errors_to_the_previous_hook(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, error, tb: seen.append(error))
    UserErrorHook().after_context_created(context=None)
    UserErrorHook().after_context_created(context=None)  # a second session does not wrap twice
    user = wrapped_twice(DataAcquisitionError("the problem. Fix: the fix."))
    sys.excepthook(type(user), user, user.__traceback__)
    assert capsys.readouterr().err == "\ndermascreen: the problem. Fix: the fix.\n" and seen == []
    bug = raised(KeyError("a bug"))
    sys.excepthook(type(bug), bug, bug.__traceback__)
    assert seen == [bug] and capsys.readouterr().err == ""
