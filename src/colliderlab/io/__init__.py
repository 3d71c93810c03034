"""Reading and writing colliderlab datasets (manifest + chunk files) and foreign formats."""

from colliderlab.io.store import Dataset, load

__all__ = ["Dataset", "load"]
