"""Exceptions that mean "the user gave us something we cannot use".

Every layer raises these for bad input; the CLI and the HTTP service turn them into one
clear line (or a 4xx) instead of a traceback.
"""

from __future__ import annotations


class ChangesegError(Exception):
    """Base class for errors caused by input, configuration or files, not by bugs."""


class InputError(ChangesegError):
    """An image, pair or argument that cannot be used (missing, unreadable, mismatched)."""


class CheckpointError(ChangesegError):
    """A checkpoint folder that is incomplete, inconsistent or of an unknown format."""


class WeightsNotFoundError(ChangesegError):
    """Pretrained backbone weights that cannot be found locally or downloaded."""


class ConfigError(ChangesegError):
    """A model or training configuration that names unknown or inconsistent options."""


class PixelLimitError(InputError):
    """An image whose header declares more pixels than the caller allows (refused before decoding)."""


class OutputError(ChangesegError):
    """An output path that cannot be written (a file where a folder is needed, no permission, disk full)."""
