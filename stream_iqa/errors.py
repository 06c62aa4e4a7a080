"""The errors a user can fix, each with the exit code the command line gives it.

The CLI prints these as one line on stderr and exits with ``exit_code``; anything else is a bug and keeps its
traceback (exit 1). Only raise them where the cause is the user's settings, flags or files, so that a programming
error never reads as bad input.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_USAGE, EXIT_INPUT = 2, 3


class StreamIQAError(Exception):
    """Base of the errors the CLI reports as one line; the message is forced onto one line for that."""

    exit_code: ClassVar[int] = EXIT_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(StreamIQAError, ValueError):
    """Settings or command-line flags that cannot work: invalid values, malformed YAML, unknown model, no device.

    A ``ValueError`` too, so callers that validated settings by catching ``ValueError`` keep working.
    """

    exit_code = EXIT_USAGE


class UnknownModelError(ConfigError, KeyError):
    """A model name the registry does not know (a ``KeyError`` too, as the registry raised before)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DeviceUnavailableError(ConfigError, RuntimeError):
    """A device that is not there (CUDA on a CPU-only machine) or not supported (``mps``); a ``RuntimeError`` too."""


class FileError(StreamIQAError):
    """A file the command needs cannot be read, or an output file cannot be written."""

    exit_code = EXIT_INPUT
