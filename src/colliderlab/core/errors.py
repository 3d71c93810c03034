"""Exceptions raised by colliderlab.

Every error a user can cause derives from :class:`ColliderlabError` *and* from the matching
builtin (``ValueError``, ``KeyError``, ``OSError``...), so ``except ValueError`` keeps working.
The message names what was wrong, what was expected and how to fix it; the CLI prints it as
one paragraph without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ColliderlabError(Exception):
    """Base class of every error that colliderlab raises on purpose."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(ColliderlabError, ValueError):
    """A parameter, setting or configuration value is invalid."""


class UnknownNameError(ColliderlabError, KeyError):
    """A name (process, model, detector card...) is not in its registry."""


class PythiaSettingError(ConfigError):
    """Pythia 8 rejected a setting; the message quotes Pythia."""


class GenerationError(ColliderlabError, RuntimeError):
    """The generator could not produce events with the given settings."""


class DatasetError(ColliderlabError, ValueError):
    """A directory or file is not a (compatible) colliderlab dataset."""


class ChecksumError(DatasetError):
    """A chunk file does not match the sha256 recorded when it was written."""


class OutputError(ColliderlabError, OSError):
    """An output location cannot be used (exists, not writable, disk full)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
