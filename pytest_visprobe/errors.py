"""Errors that reach the user. Each one names the cause and the fix in one paragraph."""

from __future__ import annotations


class VisprobeError(Exception):
    """Base class: a problem the user can fix, reported without a traceback wall."""


class EncoderLoadError(VisprobeError):
    """An ``--encoder`` reference could not be turned into an encoder."""


class EncoderOutputError(VisprobeError):
    """An encoder ran but broke the contract (wrong shape, NaN, exception inside embed)."""


class TextTowerUnavailable(EncoderOutputError):
    """An encoder's text tower cannot run here (e.g. its tokenizer is not available offline)."""


class ConfigError(VisprobeError):
    """A thresholds file, baseline or option value is malformed."""


class CacheCorruptWarning(UserWarning):
    """A cached feature file could not be read; it is recomputed."""


class BaselineUncheckedWarning(UserWarning):
    """A baseline record was compared although its settings could not be checked (old schema)."""


class PreflightError(VisprobeError):
    """The encoder failed a preflight check (preflight.py); the message names the cause and the fix."""


class ControlUnavailable(VisprobeError):
    """The encoder cannot be re-initialised for a random-init control (controls.py); says why."""


class RegistryError(VisprobeError):
    """A registration went wrong: a duplicate name without ``replace=True``, a bad lazy entry."""


class UnknownNameError(RegistryError, KeyError):
    """A name that no registry holds; the message lists what is registered and guesses the intent."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class DatasetError(VisprobeError):
    """A dataset could not be made: unknown spec, unreadable or malformed files."""


class DatasetNotFoundError(DatasetError):
    """A real dataset is not under the data root (and was not downloaded); its tests skip."""
