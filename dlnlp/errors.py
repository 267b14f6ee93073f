"""Errors that the CLI turns into a one-line message and exit code 1, or 2 for :class:`UsageError` (no traceback)."""


class DlnlpError(Exception):
    """A failure the user can act on: bad input, a missing file, a refused overwrite."""


class InputError(DlnlpError):
    """Unreadable or invalid input; the message names the file (and line) at fault."""


class ModelDirError(DlnlpError):
    """A model directory that is missing, of another kind, or of an unsupported format version."""


class OptionError(DlnlpError, ValueError):
    """An option out of its range: one line for the CLI, still a ValueError for library callers."""


def check_int(option: str, value: int, low: int, high: int, note: str = "") -> None:
    """Refuse an integer option outside ``[low, high]``, naming it as typed (``--window``)."""
    if not low <= value <= high:
        raise OptionError(f"{option} must be between {low} and {high}{note}, got {value}")


class UsageError(OptionError, InputError):
    """A value that is not one of an option's choices (``--cell transformer``): the CLI exits with 2, the
    usage-error code, as for an unknown option. Also an InputError and a ValueError, the classes these
    checks raised before, so library callers catch it as they did."""


def checked(config: object) -> None:
    """Run a config's ``validate()`` if it has one; its ValueError becomes a one-line user error (a
    DlnlpError, a UsageError among them, passes as it is)."""
    validate = getattr(config, "validate", None)
    if validate is None:
        return
    try:
        validate()
    except DlnlpError:
        raise
    except ValueError as exc:
        raise DlnlpError(str(exc)) from None
