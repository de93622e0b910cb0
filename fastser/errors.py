"""The errors fastser reports to the person running it.

A :class:`UserError` is a mistake in what the user gave fastser (a path, an option, a setting,
an audio file, a corpus, a checkpoint): the command line prints its message in one line and
exits with status 2. Anything else that escapes is a bug in fastser, and the command line shows
its traceback (exit status 1). Every user error is also a ``ValueError``, so code that catches
``ValueError`` keeps working.
"""


class UserError(ValueError):
    """A mistake in the user's input; the message names it and says what is accepted."""


class SettingsError(UserError):
    """A method setting or training option that is unknown, mistyped or out of range."""


class AudioError(UserError):
    """Audio that cannot be used (missing, empty, undecodable, too short, NaN samples)."""


class CorpusError(UserError):
    """A corpus, manifest or annotation file that cannot be read; names the file and line."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or not what the caller expects."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class NotAFileError(UserError, IsADirectoryError):
    """A folder given where a file was expected."""


class NotAFolderError(UserError, NotADirectoryError):
    """A file given where a folder was expected."""


class PathExistsError(UserError, FileExistsError):
    """An output path that already holds something fastser would overwrite."""


class StorageError(UserError, OSError):
    """An output that cannot be written: no space left on the device, a read-only or
    unwritable folder, a symbolic link where fastser writes a file."""


class FolderInUseError(UserError):
    """A run folder another fastser process is writing (it holds the folder's lock)."""


class ResumeMismatchError(UserError):
    """``--resume`` with a data source, split, seed, model or settings other than the stored
    run's; the message lists every difference."""


class NonFiniteError(UserError, FloatingPointError):
    """NaN or infinity where numbers must be finite (training, or the scores a model gives
    for a recording): never passed on as a result."""


class TrainingDiverged(NonFiniteError):
    """Training produced a non-finite loss, gradient or weight (too high a learning rate, or
    bad inputs); the message names the step and the cause."""
