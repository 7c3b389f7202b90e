"""The base class of errors a user can fix (no Kedro imports here)."""


class UserError(Exception):
    """A mistake in the user's input or setup; the message names it and says how to fix it.

    ``kedro run`` ends with this message instead of a traceback (``hooks.UserErrorHook``).
    """


def find_user_error(error: BaseException | None) -> UserError | None:
    """The first ``UserError`` in ``error``'s chain (Kedro wraps a dataset's error, twice)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
