"""User-facing errors: the CLI prints their message (no traceback unless --debug) and exits with code 2."""


class VqgenError(Exception):
    """Something the user can fix: bad input, a missing file, a mismatch. The message says what and how."""
