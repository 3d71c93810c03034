"""The small core every stage stands on: errors, registries, units, seeds, files."""
