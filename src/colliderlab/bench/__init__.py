"""Benchmarks run by ``colliderlab bench``: measured side by side in one run, printed as JSON."""
