"""``colliderlab validate-detector``: validation plots and numbers of a detector card."""

from __future__ import annotations

import json


def run(args) -> int:
    from colliderlab.detector.card import load_card
    from colliderlab.detector.validation import run_validation
    from colliderlab.report.detector import plot_validation, write_summary

    card = load_card(args.detector)
    v = run_validation(card, scale=args.scale)
    files = plot_validation(v, args.output)
    summary = write_summary(v, args.output)
    print(summary.read_text())
    print(json.dumps({"plots": [str(f) for f in files], "summary": str(summary)}))
    return 0
