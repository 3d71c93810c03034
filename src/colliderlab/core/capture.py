"""Capture what compiled code (Pythia, FastJet) prints on the process's standard output.

Results go to stdout as JSON, so banners and messages printed by C++ libraries must not reach
it; they are captured at the file-descriptor level and returned as text.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def capture_stdout() -> Iterator[list[str]]:
    """Capture what C++ code prints on file descriptor 1; the text is appended to the list."""
    out: list[str] = []
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield out
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))
