"""Errors that the command line reports as one clear sentence instead of a traceback."""


class InputError(Exception):
    """A problem with what the user gave (a file, a value, an option).

    The message is a complete sentence naming the problem and, where there is one, the file.
    """
