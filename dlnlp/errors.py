"""Errors that the CLI turns into a one-line message and exit code 1 (no traceback)."""


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
