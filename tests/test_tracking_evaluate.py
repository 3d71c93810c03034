"""Finder evaluation (score, efficiency, time, memory, scaling) and the tracking commands."""

from __future__ import annotations

import json
import mmap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from colliderlab.core.errors import ConfigError
from colliderlab.tracking.evaluate import (
    check_submission,
    evaluate_finders,
    markdown_table,
    measure,
    plot_efficiency,
    plot_scaling,
    power_law_exponent,
    scaling,
    scaling_markdown,
)
from colliderlab.tracking.finders import TrackFinder
from colliderlab.tracking.io import read_event

DATA = Path(__file__).parent / "data" / "trackml"


@pytest.fixture(scope="module")
def real_event():
    return read_event(DATA / "event000000001")


class Oracle(TrackFinder):
    """Cheats with the truth: a perfect finder, for testing the evaluation."""

    name = "oracle"

    def find(self, event):
        t = event.truth.set_index("hit_id").loc[event.hits["hit_id"], "particle_id"]
        return self.submission(event.hits["hit_id"], t.to_numpy())


class OneTrack(TrackFinder):
    """Puts every hit on one track: no particle has > 50% of it, so the score is 0."""

    name = "one"

    def find(self, event):
        return self.submission(event.hits["hit_id"], np.ones(event.n_hits, dtype=np.int64))


class DropsHits(TrackFinder):
    name = "broken"

    def find(self, event):
        return self.submission(event.hits["hit_id"][:-1], np.zeros(event.n_hits - 1))


def test_oracle_scores_one_and_one_track_scores_zero(real_event):
    result = evaluate_finders([real_event], {"oracle": Oracle(), "one": OneTrack()}, progress=False)
    rows = {r["finder"]: r for r in result["rows"]}
    assert rows["oracle"]["score"] == pytest.approx(1.0, abs=1e-9)
    assert rows["oracle"]["efficiency"] == pytest.approx(1.0)
    assert rows["oracle"]["fake_rate"] == pytest.approx(0.0)
    assert rows["oracle"]["duplicate_rate"] == pytest.approx(0.0)
    assert rows["one"]["score"] == pytest.approx(0.0, abs=1e-12)
    assert rows["one"]["efficiency"] == pytest.approx(0.0)
    assert rows["oracle"]["seconds_per_event"] > 0
    table = markdown_table(result["rows"])
    assert "| oracle | 1.0000" in table
    assert "| one | 0.0000" in table


def test_a_submission_missing_hits_is_refused(real_event):
    with pytest.raises(ConfigError, match="every hit id"):
        measure(DropsHits(), real_event)
    with pytest.raises(ConfigError, match="track_id"):
        check_submission(real_event, pd.DataFrame({"hit_id": real_event.hits["hit_id"]}))


class Allocates(Oracle):
    """The oracle that also holds ``mb`` MB of touched memory for a moment."""

    name = "allocates"

    def __init__(self, mb: int) -> None:
        self.mb = mb

    def find(self, event):
        # an anonymous mapping, touched page by page: fresh resident memory whatever the
        # allocator keeps from earlier tests
        block = mmap.mmap(-1, self.mb * 2**20)
        np.frombuffer(block, np.uint8)[:: mmap.PAGESIZE] = 1
        time.sleep(0.05)
        block.close()
        return super().find(event)


@pytest.mark.parametrize("kernel", [True, False], ids=["high-water-mark", "sampler"])
def test_peak_memory_sees_a_block_freed_before_the_finder_returns(real_event, monkeypatch, kernel):
    """200 MB allocated and freed inside ``find``: measured 200 MB (within 30), also after
    an earlier allocation of the same size left free pages; a finder that allocates little
    measures little."""
    import colliderlab.tracking.evaluate as ev

    if not kernel:
        monkeypatch.setattr(ev, "_reset_peak_rss", lambda: False)
    elif not ev._reset_peak_rss():
        pytest.skip("no resettable RSS high-water mark (not Linux)")
    for _ in range(2):
        _, _, extra = measure(Allocates(200), real_event)
        assert 170 <= extra <= 230
    _, _, small = measure(Oracle(), real_event)
    assert small < 30


def test_peak_memory_inside_compiled_code_holding_the_gil(real_event):
    """A numba kernel that allocates, touches and frees 200 MB without releasing the GIL (as
    the ckf kernels do): a sampling thread cannot see it, the kernel's high-water mark does."""
    from numba import njit

    import colliderlab.tracking.evaluate as ev

    if not ev._reset_peak_rss():
        pytest.skip("no resettable RSS high-water mark (not Linux)")

    @njit
    def churn(n):
        a = np.ones(n)
        return a.sum()

    class Compiled(Oracle):
        def find(self, event):
            churn(200 * 2**20 // 8)
            return super().find(event)

    churn(8)
    _, _, extra = measure(Compiled(), real_event)
    assert 170 <= extra <= 230


def test_no_events_or_no_finders_is_an_error(real_event):
    with pytest.raises(ConfigError, match="at least one event"):
        evaluate_finders([], {"oracle": Oracle()})
    with pytest.raises(ConfigError, match="at least one track finder"):
        evaluate_finders([real_event], {})


def test_power_law_exponent():
    n = np.array([1e3, 1e4, 1e5])
    assert power_law_exponent(n, 3e-6 * n) == pytest.approx(1.0)
    assert power_law_exponent(n, 1e-9 * n**2) == pytest.approx(2.0)
    assert np.isnan(power_law_exponent([10.0], [1.0]))


def test_scaling_and_plots(real_event, tmp_path):
    small = read_event(DATA / "event000000001")
    keep = small.hits["hit_id"].to_numpy()[::3]
    small.hits = small.hits[small.hits["hit_id"].isin(keep)].reset_index(drop=True)
    small.truth = small.truth[small.truth["hit_id"].isin(keep)].reset_index(drop=True)
    result = scaling({0.0: [small], 1.0: [real_event]}, {"oracle": Oracle()}, progress=False)
    assert [r["mu"] for r in result["rows"]] == [0.0, 1.0]
    assert result["rows"][1]["hits_per_event"] == real_event.n_hits
    assert np.isfinite(result["exponents"]["oracle"]["time"])
    assert "alpha" in scaling_markdown(result)
    assert plot_scaling(result, tmp_path / "s.png").stat().st_size > 10_000
    ev = evaluate_finders([real_event], {"oracle": Oracle()}, progress=False)
    path = plot_efficiency([real_event], ev["submissions"], tmp_path / "eff.png")
    assert path.stat().st_size > 10_000


def test_evaluate_command_on_trackml_files(tmp_path, capsys):
    from colliderlab.cli.main import main

    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate",
            "tracking",
            "--input",
            str(DATA),
            "--events",
            "1",
            "--finders",
            "dbscan",
            "--no-progress",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| dbscan |" in text
    assert "TrackML files" in text
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert 0.0 < rows[0]["score"] <= 1.0
    assert (out / "efficiency.png").exists()
    # the Markdown report is the printed table, and no temporary file is left behind
    assert "| dbscan |" in (out / "results.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["efficiency.png", "results.json", "results.md"]


def test_commands_give_clear_errors(tmp_path, capsys):
    from colliderlab.cli.main import main

    assert main(["evaluate", "tracking", "--input", str(tmp_path), "--finders", "ckf"]) == 2
    assert "no TrackML events" in capsys.readouterr().err
    args = ["evaluate", "tracking", "--input", str(DATA), "--finders", "gnn"]
    assert main(args) == 2
    assert "--gnn RUN_DIR" in capsys.readouterr().err
    assert main(["evaluate", "tracking", "--input", str(DATA), "--finders", "kalman"]) == 2
    assert "unknown track finder 'kalman'" in capsys.readouterr().err
    assert main(["train", "tracking", "--model", "ckf", "--input", str(DATA)]) == 2
    assert "only the gnn finder is trained" in capsys.readouterr().err


def test_unknown_finder_option_names_the_valid_ones():
    from colliderlab.tracking.finders import finder_names, make_finder

    assert {"ckf", "dbscan"} <= set(finder_names())
    with pytest.raises(ConfigError, match=r"epz.*Its options are: eps"):
        make_finder("dbscan", epz=0.01)
