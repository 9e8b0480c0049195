"""The one exception type users see: a clear sentence, printed without a traceback."""


class DigitocrError(Exception):
    """An error caused by the user's input (a file, a flag, an image): reported in one line, exit 2."""
