"""Errors that reach the user. Each one names the cause and the fix in one paragraph."""

from __future__ import annotations


class VisprobeError(Exception):
    """Base class: a problem the user can fix, reported without a traceback wall."""


class EncoderLoadError(VisprobeError):
    """An ``--encoder`` reference could not be turned into an encoder."""


class EncoderOutputError(VisprobeError):
    """An encoder ran but broke the contract (wrong shape, NaN, exception inside embed)."""


class ConfigError(VisprobeError):
    """A thresholds file, baseline or option value is malformed."""


class CacheCorruptWarning(UserWarning):
    """A cached feature file could not be read; it is recomputed."""


class PreflightError(VisprobeError):
    """The encoder failed a preflight check (preflight.py); the message names the cause and the fix."""


class ControlUnavailable(VisprobeError):
    """The encoder cannot be re-initialised for a random-init control (controls.py); says why."""
