"""colliderlab: machine learning across the whole collider data pipeline.

Import what you need from the subpackages (``colliderlab.generate``, ``colliderlab.io``);
importing the top-level package does no work and pulls in no heavy dependency.
"""

from colliderlab._version import __version__

__all__ = ["__version__"]
