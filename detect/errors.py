"""The user-facing error types, kept free of heavy imports so every stage can raise them."""


class DataError(Exception):
    """Bad dataset input; the message names the file and what to do."""


class WeightsError(Exception):
    """A weights file that cannot be used; the message names the file and what to do."""


class UsageError(Exception):
    """A bad option value; the message says which and what is accepted."""


class OutputError(Exception):
    """An output that cannot be written (read-only, full disk); the message names the path and the cause."""
