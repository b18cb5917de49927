"""Exceptions with messages a user can act on; the CLI prints them as one line."""


class DFFError(Exception):
    """Base class of every error the CLI reports as ``dff: error: <message>``."""


class CheckpointError(DFFError):
    """A weights file is missing, unreadable, unsafe or does not fit the model."""


class InputError(DFFError):
    """A frame, video, folder or other user input is unusable."""


class DatasetError(DFFError):
    """A dataset file (XML, JSON, list file, image) is missing or malformed."""


class OutputError(DFFError):
    """An output path is unusable: it is an input, a folder, shared by two outputs, or not writable."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like a Ctrl-C (outputs finalised) but reported with exit status 143."""
