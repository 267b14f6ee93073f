"""Errors that the CLI turns into a one-line message and exit code 1 (no traceback)."""


class DlnlpError(Exception):
    """A failure the user can act on: bad input, a missing file, a refused overwrite."""


class InputError(DlnlpError):
    """Unreadable or invalid input; the message names the file (and line) at fault."""


class ModelDirError(DlnlpError):
    """A model directory that is missing, of another kind, or of an unsupported format version."""
