"""The one exception type for user mistakes: the CLI prints its message on one line, without a traceback."""


class PSPNetError(ValueError):
    """A problem with the user's input (a file, a value, a setting). The message says what was expected."""
