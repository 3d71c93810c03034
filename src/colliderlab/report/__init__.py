"""Tables and plots (mplhep style) that a physicist would put on a slide."""
