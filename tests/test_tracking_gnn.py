"""The GNN track finder: module map, edge labels, interaction network, resumable training,
track building and the finder on a real TrackML event."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from colliderlab.core.errors import ConfigError, DatasetError
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.gnn import (
    EdgeFilter,
    GNNFinder,
    InteractionNetwork,
    TrainConfig,
    build_tracks,
    edge_metrics,
    evaluate_edges,
    load_checkpoint,
    train,
    training_memory_estimate,
)
from colliderlab.tracking.graph import (
    ModuleMap,
    edge_labels,
    graph_metrics,
    label_edges,
    truth_graph,
)

DATA = Path(__file__).parent / "data" / "trackml"
#: A tiny network: the training tests are about the loop, not the physics.
TINY = {
    "hidden": 16,
    "iterations": 2,
    "mlp_layers": 1,
    "map_level": "module",
    "filter_epochs": 2,
    "filter_hidden": 16,
    "filter_layers": 1,
    "filter_batch": 512,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread (the machines are shared), also for the module-scoped training."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def real_event() -> TrackingEvent:
    """The thinned real TrackML event (5,527 hits, 548 particles)."""
    p = str(DATA / "event000000001-")
    return TrackingEvent(
        1,
        pd.read_csv(p + "hits.csv.gz"),
        pd.read_csv(p + "particles.csv.gz"),
        pd.read_csv(p + "truth.csv.gz"),
    )


def hand_event() -> TrackingEvent:
    """Two straight particles through four barrel layers (one with a second hit on an
    overlapping module of layer 4), plus a noise hit. Rows: particle 1 = 0, 1, 2, 3, 4;
    particle 2 = 5, 6, 7, 8; noise = 9. Hit ids are the row + 1, shuffled in the table."""
    r = [30.0, 70.0, 72.0, 115.0, 170.0, 30.0, 70.0, 115.0, 170.0, 100.0]
    phi = [0.1, 0.1, 0.1, 0.1, 0.1, 2.0, 2.0, 2.0, 2.0, 1.0]
    layer = [2, 4, 4, 6, 8, 2, 4, 6, 8, 6]
    module = [1, 1, 2, 1, 1, 5, 5, 5, 5, 9]
    pid = [11, 11, 11, 11, 11, 22, 22, 22, 22, 0]
    r_, phi_ = np.array(r), np.array(phi)
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, 11),
            "x": r_ * np.cos(phi_),
            "y": r_ * np.sin(phi_),
            "z": 0.5 * r_,
            "volume_id": 8,
            "layer_id": layer,
            "module_id": module,
        }
    )
    truth = pd.DataFrame({"hit_id": np.arange(1, 11), "particle_id": pid})
    for col in ("tx", "ty", "tz"):
        truth[col] = hits[col[1]]
    truth["tpx"], truth["tpy"], truth["tpz"], truth["weight"] = 2.0, 0.0, 1.0, 0.1
    particles = pd.DataFrame(
        {
            "particle_id": [11, 22],
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "px": [2.0, 0.8],
            "py": 0.0,
            "pz": 1.0,
            "q": 1,
            "nhits": [5, 4],
        }
    )
    shuffle = np.random.default_rng(0).permutation(10)
    return TrackingEvent(
        7,
        hits.iloc[shuffle].reset_index(drop=True),
        particles,
        truth.iloc[np.random.default_rng(1).permutation(10)].reset_index(drop=True),
    )


def _rows(event: TrackingEvent, hit_ids) -> list[int]:
    pos = {h: i for i, h in enumerate(event.hits["hit_id"])}
    return [pos[h] for h in hit_ids]


# ----------------------------------------------------------------------------- graph
def test_truth_graph_and_edge_labels_on_a_hand_made_event():
    event = hand_event()
    edges, pt = truth_graph(event)
    # hit ids: particle 1 = 1..5 (2 and 3 on overlapping modules), particle 2 = 6..9
    hid = event.hits["hit_id"].to_numpy()
    got = sorted(zip(hid[edges[0]].tolist(), hid[edges[1]].tolist(), pt.tolist(), strict=True))
    assert got == [(1, 2, 2.0, ), (2, 3, 2.0), (3, 4, 2.0), (4, 5, 2.0),
                   (6, 7, 0.8), (7, 8, 0.8), (8, 9, 0.8)]  # fmt: skip
    high, _ = truth_graph(event, pt_min=1.0)
    assert high.shape == (2, 4)
    cand = np.array(
        [_rows(event, [1, 3, 5, 2, 1, 4, 6, 2]), _rows(event, [2, 2, 4, 4, 6, 10, 7, 9])]
    )
    # 1-2 true; 3-2 true (reversed); 5-4 true (reversed); 2-4 skips hit 3: false;
    # across particles false; with noise false; 6-7 true; 2-9 false
    expected = [True, True, True, False, False, False, True, False]
    assert edge_labels(event, cand).tolist() == expected
    label, lpt = label_edges(event, cand)
    assert np.allclose(lpt[label], [2.0, 2.0, 2.0, 0.8])
    assert np.isnan(lpt[~label]).all()


@pytest.mark.parametrize("level", ["module", "layer"])
def test_module_map_holds_every_high_pt_edge_of_its_training_event(real_event, level):
    mmap = ModuleMap(level=level, pt_min=1.0).fit([real_event])
    edges = mmap.build(real_event.hits)
    m = graph_metrics(real_event, edges, pt_min=1.0)
    assert m["n_true"] > 500
    assert m["efficiency"] == 1.0
    # edges point outwards and are unique
    rho = np.linalg.norm(real_event.hits[["x", "y", "z"]].to_numpy(float), axis=1)
    assert (rho[edges[0]] <= rho[edges[1]]).all()
    assert len(np.unique(edges[0] * len(rho) + edges[1])) == edges.shape[1]
    # the saved map builds the same graph
    again = ModuleMap.from_state(mmap.state_dict()).build(real_event.hits)
    np.testing.assert_array_equal(again, edges)


@pytest.mark.parametrize("level", ["module", "layer"])
def test_map_builds_exactly_the_edges_of_its_cuts(real_event, level):
    """build() (a dphi window and a compiled cut loop) against a brute force: every pair of
    hits on a linked layer pair, edge_geometry and the cuts in numpy, outward, no self-loop,
    and for the module map a linked module pair."""
    from colliderlab.tracking.graph import edge_geometry, element_keys, hit_cylindrical

    mmap = ModuleMap(level=level, pt_min=0.5).fit([real_event])
    hits = real_event.hits
    n = len(hits)
    coords = hit_cylindrical(hits)
    layer = element_keys(hits, "layer")
    keys = element_keys(hits, level)
    found = []
    for (la, lb), cut in zip(mmap.layer_pairs, mmap.cuts, strict=True):
        a, b = (
            g.ravel() for g in np.meshgrid(np.flatnonzero(layer == la), np.flatnonzero(layer == lb))
        )
        rho = coords["rho"]
        keep = ((rho[a] < rho[b]) | ((rho[a] == rho[b]) & (a < b))) & (a != b)
        a, b = a[keep], b[keep]
        geom = edge_geometry(coords, np.stack([a, b]))
        inside = ~((geom < cut[:, 0]) | (geom > cut[:, 1])).any(axis=1)
        a, b = a[inside], b[inside]
        if level == "module":
            linked = np.isin(keys[a] * 10**9 + keys[b], mmap.pairs)
            a, b = a[linked], b[linked]
        found.append(a * n + b)
    key = np.unique(np.concatenate(found))
    expected = np.stack([key // n, key % n])
    edges = mmap.build(hits)
    assert edges.shape[1] > 1000
    np.testing.assert_array_equal(edges, expected)


def test_module_map_is_purer_than_layer_map(real_event):
    sizes = {
        level: ModuleMap(level=level, pt_min=1.0).fit([real_event]).build(real_event.hits)
        for level in ("module", "layer")
    }
    assert sizes["module"].shape[1] < sizes["layer"].shape[1]


def test_unfitted_map_and_bad_level_are_refused(real_event):
    with pytest.raises(ConfigError, match="not fitted"):
        ModuleMap().build(real_event.hits)
    with pytest.raises(ConfigError, match="level"):
        ModuleMap(level="modules")


# ----------------------------------------------------------------------------- network
def test_interaction_network_shape_and_permutation_equivariance():
    torch.manual_seed(0)
    n, e = 40, 120
    model = InteractionNetwork(node_features=3, edge_features=6, hidden=16, iterations=3).eval()
    x = torch.randn(n, 3)
    edge_index = torch.randint(0, n, (2, e))
    edge_attr = torch.randn(e, 6)
    out = model(x, edge_index, edge_attr)
    assert out.shape == (e,)
    assert "hidden=16" in repr(model)
    # relabel the nodes and shuffle the edges: the logits follow the edges
    perm = torch.randperm(n)  # new node i is old node perm[i]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    eperm = torch.randperm(e)
    out2 = model(x[perm], inv[edge_index][:, eperm], edge_attr[eperm])
    torch.testing.assert_close(out2, out[eperm], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="edge_attr"):
        model(x, edge_index, edge_attr[:, :5])


def test_edge_filter_shape_and_chunked_scores():
    torch.manual_seed(0)
    n, e = 30, 100
    model = EdgeFilter(node_features=3, edge_features=6, hidden=8, layers=2)
    x, edge_index, edge_attr = torch.randn(n, 3), torch.randint(0, n, (2, e)), torch.randn(e, 6)
    logits = model(x, edge_index, edge_attr)
    assert logits.shape == (e,)
    # scores in chunks are the sigmoid of the logits, and leave the training mode alone
    torch.testing.assert_close(model.scores(x, edge_index, edge_attr, chunk=7), logits.sigmoid())
    assert model.training
    assert "hidden=8" in repr(model)
    with pytest.raises(ValueError, match="EdgeFilter: edge_attr"):
        model(x, edge_index, edge_attr[:, :5])
    with pytest.raises(ValueError, match=r"EdgeFilter: x must have shape \(N, 3\)"):
        model(x[:, :2], edge_index, edge_attr)
    with pytest.raises(ValueError, match=r"EdgeFilter: edge_index must have shape \(2, E\)"):
        model(x, edge_index[:1], edge_attr)


def _saved_bytes(model, x, edge_index, edge_attr) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes of the distinct storages autograd keeps for the backward pass of one step, and
    the gradients of that step."""
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return t

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x, edge_index, edge_attr)
    logits.square().mean().backward()
    return sum(kept.values()), {k: p.grad.clone() for k, p in model.named_parameters()}


def test_recompute_keeps_the_gradients_and_a_fraction_of_the_tensors():
    torch.manual_seed(0)
    n, e = 300, 1000
    model = InteractionNetwork(node_features=3, edge_features=6, hidden=16, iterations=8)
    x, edge_index, edge_attr = torch.randn(n, 3), torch.randint(0, n, (2, e)), torch.randn(e, 6)
    full, grads = _saved_bytes(model, x, edge_index, edge_attr)
    model.recompute = True
    less, grads_recomputed = _saved_bytes(model, x, edge_index, edge_attr)
    # the same gradients, bit for bit (the iterations run again with the same kernels)
    for k, g in grads.items():
        assert torch.equal(g, grads_recomputed[k]), k
    # 8 iterations each keep ~13 (E, hidden) tensors without, 2 with recomputation
    assert less < 0.4 * full, (less, full)
    # inference is not affected (nothing is kept)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, edge_index, edge_attr), model.eval()(x, edge_index, edge_attr)
        )


def test_memory_estimate_matches_the_gpu_training_and_scales():
    import json

    shipped = json.loads(
        (Path(__file__).parents[1] / "benchmarks/tracking/gnn_mu200_h100/result.json").read_text()
    )
    config = TrainConfig.from_dict(shipped["config"])
    edges = int(shipped["graph"]["gnn_edges_per_event"])  # mean over its 48 events
    estimate = training_memory_estimate(edges, config) / 2**30
    # its measured peak: 39.3 GiB on the H100
    assert 0.7 * shipped["peak_gpu_memory_gb"] < estimate < 1.3 * shipped["peak_gpu_memory_gb"]
    assert training_memory_estimate(2 * edges, config) == 2 * training_memory_estimate(
        edges, config
    )
    ratio = training_memory_estimate(edges, config, recompute=True) / (estimate * 2**30)
    assert 0.4 < ratio < 0.6


# ----------------------------------------------------------------------------- training
class _Killed(Exception):
    """Stands for a training job killed after a checkpoint was written."""


def _kill_after(n_entries: int):
    seen = []

    def on_epoch(entry):
        seen.append(entry)
        if len(seen) == n_entries:
            raise _Killed

    return on_epoch


def test_training_lowers_the_loss_and_resumes_exactly(real_event, tmp_path):
    config = TrainConfig(epochs=4, lr=5e-3, **TINY)
    full = train([real_event], tmp_path / "full", config)
    losses = [h["train_loss"] for h in full["history"]]
    assert losses[-1] < losses[0]
    assert full["n_params"] > 0
    assert full["graph"]["edges_per_event"] > 0
    # the filter ran first, and its cut keeps >= 99% of the true pT > 1 GeV edges it saw
    assert [h["stage"] for h in full["filter"]["history"]] == ["filter", "filter"]
    assert full["filter"]["history"][-1]["train_filter_efficiency"] >= 0.99
    assert 0.0 <= full["filter"]["cut"] < 1.0
    # killed in the filter stage (after filter epoch 1), then in the GNN stage (after GNN
    # epoch 1), then resumed to the end: the same losses, cut and weights
    part = tmp_path / "part"
    for n_entries in (1, 2):
        with pytest.raises(_Killed):
            train([real_event], part, config, on_epoch=_kill_after(n_entries))
    resumed = train([real_event], part, config)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx(losses, abs=1e-6)
    assert resumed["filter"]["cut"] == pytest.approx(full["filter"]["cut"], abs=1e-6)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(part)
    for part_name in ("model", "filter"):
        for key in a[part_name]:
            torch.testing.assert_close(a[part_name][key], b[part_name][key], rtol=0, atol=1e-6)
    # raising epochs continues a finished run (the filter is not retrained)
    longer = train([real_event], part, TrainConfig(**{**config.to_dict(), "epochs": 5}))
    assert len(longer["history"]) == 5
    assert len(longer["filter"]["history"]) == 2
    # another configuration in the same directory is refused
    with pytest.raises(ConfigError, match="hidden"):
        train([real_event], part, TrainConfig(epochs=5, lr=5e-3, **{**TINY, "hidden": 8}))


def test_recompute_trains_the_same_network_and_memory_is_checked_first(
    real_event, tmp_path, monkeypatch
):
    import colliderlab.tracking.gnn as gnn

    config = TrainConfig(epochs=2, lr=5e-3, **TINY)
    plain = train([real_event], tmp_path / "plain", config)
    assert plain["recompute"] is False
    # a machine without the memory a step needs: a warning naming the remedies, before the
    # first GNN step (a process killed for its memory says nothing)
    monkeypatch.setattr(gnn, "_available_memory", lambda device: 1000)
    with pytest.warns(RuntimeWarning, match=r"needs about .* GiB.*--filter-efficiency") as seen:
        recomputed = train([real_event], tmp_path / "recomputed", config, recompute=True)
    assert "--recompute:" not in str(seen[0].message)  # already on
    assert recomputed["recompute"] is True
    assert [h["train_loss"] for h in recomputed["history"]] == pytest.approx(
        [h["train_loss"] for h in plain["history"]], abs=1e-6
    )
    a, b = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "recomputed")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6)
    # without recompute the warning offers it; with enough memory there is none (the check
    # `train` runs before its first GNN step)
    cpu = torch.device("cpu")
    with pytest.warns(RuntimeWarning, match=r"--recompute: ~2x less"):
        gnn._warn_memory(10**6, config, False, cpu)
    monkeypatch.setattr(gnn, "_available_memory", lambda device: 2**62)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        gnn._warn_memory(10**6, config, False, cpu)


def test_edge_filter_keeps_the_configured_efficiency_and_prunes_the_graph(real_event, tmp_path):
    """Filter stage end to end: on its training event the cut keeps >= filter_efficiency of
    the true pT > 1 GeV edges and removes edges; the GNN trains and the finder runs on the
    pruned graph."""
    config = TrainConfig(
        epochs=1,
        **{**TINY, "filter_epochs": 3, "filter_hidden": 16, "filter_layers": 2},
        filter_efficiency=0.95,
    )
    result = train([real_event], tmp_path / "run", config)
    last = result["filter"]["history"][-1]
    assert last["train_filter_efficiency"] >= 0.95
    assert 0.0 < last["train_filter_kept"] < 1.0
    graph = result["graph"]
    assert 0 < graph["gnn_edges_per_event"] < graph["edges_per_event"]
    assert graph["gnn_true_fraction"] > graph["true_fraction"]
    # the finder applies the same cut: the edges it passes to the GNN are the training ones
    finder = GNNFinder(checkpoint=tmp_path / "run")
    assert finder.filter_cut == pytest.approx(result["filter"]["cut"])
    finder.find(real_event)
    assert finder.last_edges["graph"] == graph["edges_per_event"]
    assert finder.last_edges["gnn"] == graph["gnn_edges_per_event"]
    # and its edge scores lose at most 5% of the true pT > 1 GeV edges to the filter
    all_pass = GNNFinder(checkpoint=tmp_path / "run", threshold=0.0)
    edges, scores = all_pass.edge_scores(real_event)
    label, pt = label_edges(real_event, edges)
    high = label & (np.nan_to_num(pt) > 1.0)
    assert (scores[high] > 0).mean() >= 0.95


def test_train_command_sets_the_network_and_filter_options(tmp_path, capsys):
    import json

    from colliderlab.cli.main import main

    out = tmp_path / "run"
    common = ["train", "tracking", "--input", str(DATA), "--events", "1", "--threads", "1"]
    options = [
        "--epochs", "1", "--hidden", "8", "--iterations", "1", "--lr-step", "3",
        "--filter-epochs", "1", "--filter-efficiency", "0.9", "--filter-hidden", "8",
        "--filter-layers", "1", "--map-level", "module", "--no-progress",
        "--aggregation", "sum", "--mlp-layers", "1", "--pos-weight", "3", "--loss-pt-min",
        "0.8", "--lr-decay", "0.7", "--cells", "--device", "cpu", "--recompute",
    ]  # fmt: skip
    assert main([*common, *options, "-o", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    config = result["config"]
    assert result["device"] == "cpu"
    assert result["recompute"] is True
    assert (config["aggregation"], config["mlp_layers"], config["cells"]) == ("sum", 1, True)
    assert (config["pos_weight"], config["loss_pt_min"], config["lr_decay"]) == (3.0, 0.8, 0.7)
    assert (config["epochs"], config["hidden"], config["iterations"], config["lr_step"]) == (
        1, 8, 1, 3,
    )  # fmt: skip
    assert config["filter_epochs"] == 1
    assert config["filter_efficiency"] == 0.9
    assert (config["filter_hidden"], config["filter_layers"]) == (8, 1)
    assert config["map_level"] == "module"
    capsys.readouterr()
    # bad values name the option and fail before any event is read
    for bad, message in [
        (["--filter-efficiency", "1.5"], "--filter-efficiency must be in (0, 1]"),
        (["--filter-efficiency", "0"], "--filter-efficiency must be in (0, 1]"),
        (["--filter-epochs", "-1"], "--filter-epochs must be >= 0"),
        (["--hidden", "0"], "--hidden must be >= 1"),
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--map-level", "modul"], "--map-level must be one of"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--aggregation", "maximum"], "--aggregation must be one of"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--val-events", "-1"], "--val-events must be >= 0"),
        (["--val-events", "2"], "with --input"),
    ]:
        assert main([*common, *bad, "-o", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_graphs_built_on_dask_equal_the_in_process_ones(real_event):
    """make_graphs on a 2-worker LocalCluster: the same tensors, in the order of the events."""
    from colliderlab.tracking.gnn import make_graphs

    events = [real_event, hand_event()]
    module_map = ModuleMap(level="module").fit([real_event])
    here = make_graphs(events, module_map, cells=True, workers=1)
    there = make_graphs(events, module_map, cells=True, workers=2)
    assert [s.edge_index.shape[1] for s in here] == [s.edge_index.shape[1] for s in there]
    assert here[0].edge_index.shape[1] > 1000
    assert here[0].x.shape == (len(real_event.hits), 5)
    for a, b in zip(here, there, strict=True):
        for name in ("x", "edge_index", "edge_attr", "y", "pt"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), equal_nan=True)


def test_finder_checkpoint_scores_the_same_edges_and_is_not_resumed(real_event, tmp_path):
    from colliderlab.tracking.gnn import finder_checkpoint

    config = TrainConfig(epochs=1, **TINY)
    train([real_event], tmp_path / "run", config)
    shipped = finder_checkpoint(tmp_path / "run", tmp_path / "ship")
    assert shipped == tmp_path / "ship" / "checkpoint.pt"
    assert shipped.stat().st_size < (tmp_path / "run" / "checkpoint.pt").stat().st_size
    state = load_checkpoint(shipped)
    assert "optimizer" not in state
    assert "filter_optimizer" not in state
    edges_a, scores_a = GNNFinder(checkpoint=tmp_path / "run").edge_scores(real_event)
    edges_b, scores_b = GNNFinder(checkpoint=shipped).edge_scores(real_event)
    np.testing.assert_array_equal(edges_a, edges_b)
    np.testing.assert_array_equal(scores_a, scores_b)
    assert (scores_a > 0).any()
    with pytest.raises(ConfigError, match="not resumed"):
        train([real_event], tmp_path / "ship", config)


def test_a_device_that_is_not_there_is_refused(real_event, tmp_path):
    with pytest.raises(ConfigError, match="'tpu'"):
        train([real_event], tmp_path / "run", TrainConfig(**TINY), device="tpu")
    with pytest.raises(ConfigError, match="unknown device"):
        GNNFinder(device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            train([real_event], tmp_path / "run", TrainConfig(**TINY), device="cuda")
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_another_model_or_format_is_refused(tmp_path):
    other = tmp_path / "tagger.pt"
    torch.save({"kind": "colliderlab-tagger", "format": 1}, other)
    with pytest.raises(DatasetError, match="not a colliderlab GNN track-finder checkpoint"):
        GNNFinder(checkpoint=other)
    old = tmp_path / "old.pt"
    torch.save({"kind": "colliderlab-gnn-tracker", "format": 0, "model_name": "x"}, old)
    with pytest.raises(DatasetError, match="Retrain"):
        load_checkpoint(old)
    with pytest.raises(DatasetError, match="no GNN checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="no model"):
        GNNFinder().find(hand_event())


def test_checkpoint_without_filter_still_finds_tracks_but_does_not_resume(real_event, tmp_path):
    """Format-1 checkpoints (written before the edge filter) run without a filter; training
    cannot continue them."""
    config = TrainConfig(epochs=1, **TINY)
    train([real_event], tmp_path / "run", config)
    state = load_checkpoint(tmp_path / "run")
    for key in ("filter", "filter_optimizer", "filter_cut", "filter_history"):
        del state[key]
    state["format"] = 1
    state["config"] = {k: v for k, v in state["config"].items() if not k.startswith("filter_")}
    old = tmp_path / "old"
    old.mkdir()
    torch.save(state, old / "checkpoint.pt")
    finder = GNNFinder(checkpoint=old)
    assert finder.edge_filter is None
    assert finder.config.filter_epochs == 0
    sub = finder.find(real_event)
    assert len(sub) == len(real_event.hits)
    assert finder.last_edges["gnn"] == finder.last_edges["graph"] > 0
    with pytest.raises(ConfigError, match="format-1"):
        train([real_event], old, config)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ConfigError, match="Did you mean 'hidden'"):
        TrainConfig.from_dict({"hiden": 3})
    with pytest.raises(ConfigError, match="filter_efficiency"):
        TrainConfig(filter_efficiency=1.5).validate()
    with pytest.raises(ConfigError, match="filter_epochs"):
        TrainConfig(filter_epochs=-1).validate()


# ----------------------------------------------------------------------------- tracks
def test_walk_through_splits_two_tracks_crossing_at_a_shared_hit():
    # track A: 0 -> 1 -> 2 -> 3 -> 4, track B: 5 -> 6 -> 2 -> 7 -> 8 (hit 2 shared)
    edges = np.array([[0, 1, 2, 3, 5, 6, 2, 7], [1, 2, 3, 4, 6, 2, 7, 8]])
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8])
    rho = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 1.1, 2.1, 4.1, 5.1])
    labels = build_tracks(9, edges, scores, order=rho, min_hits=3)
    a, b = labels[0], labels[5]
    assert min(a, b) > 0
    assert a != b
    assert (labels[[0, 1, 2, 3, 4]] == a).all()
    assert (labels[[5, 6, 7, 8]] == b).all()
    # connected components alone would merge them; below the threshold nothing is kept
    assert (build_tracks(9, edges, scores, threshold=0.95) == 0).all()
    # a simple chain is one track; too short tracks are dropped
    chain = build_tracks(4, np.array([[0, 1], [1, 2]]), np.array([0.9, 0.9]), min_hits=3)
    assert chain.tolist() == [1, 1, 1, 0]
    assert build_tracks(0, np.zeros((2, 0), int), np.zeros(0)).shape == (0,)


def test_edge_metrics_follow_the_pt_convention():
    y = np.array([1, 1, 1, 0, 0, 1], bool)
    score = np.array([0.9, 0.2, 0.8, 0.7, 0.1, 0.9])
    pt = np.array([2.0, 3.0, 0.5, np.nan, np.nan, 1.5])
    m = edge_metrics(y, score, pt=pt, threshold=0.5, pt_min=1.0)
    # high-pT true edges: 0, 1, 5 (2 found); selected minus the low-pT true edge 2: 0, 3, 5
    assert m["efficiency"] == pytest.approx(2 / 3)
    assert m["purity"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- finder
#: The finder trained (45 epochs, 4 seeds) on the real event and run on it: TrackML score
#: 0.50-0.53, edge efficiency 0.93-0.96 and purity 0.72-0.84 (pT > 1 GeV, threshold 0.5), where
#: the graph alone has purity 0.47. With the edge filter (20 epochs; it keeps 90-94% of this
#: small graph), seeds 2-6: score 0.49-0.55, purity 0.70-0.81; seed 1 settles at another
#: operating point (efficiency 0.99, purity 0.54, score 0.51), so the fixture uses seed 2.
#: The bounds leave margins for other platforms.
MIN_SCORE_REAL = 0.42
MIN_EDGE_EFFICIENCY_REAL = 0.88
MIN_EDGE_PURITY_REAL = 0.62


@pytest.fixture(scope="module")
def trained_finder(real_event, tmp_path_factory):
    out = tmp_path_factory.mktemp("gnn")
    config = TrainConfig(
        epochs=45,
        lr=3e-3,
        lr_step=30,
        hidden=32,
        iterations=4,
        map_level="module",
        map_pt_min=0.5,
        pos_weight=1.0,
        filter_epochs=20,
        filter_batch=2048,
        seed=2,
    )
    train([real_event], out, config)
    return GNNFinder(checkpoint=out, threshold=0.5)


def test_gnn_finder_on_the_real_event(real_event, trained_finder):
    from colliderlab.tracking.finders import make_finder
    from colliderlab.tracking.score import trackml_score

    sub = trained_finder.find(real_event)
    assert list(sub.columns) == ["hit_id", "track_id"]
    assert len(sub) == len(real_event.hits)
    assert set(sub["hit_id"]) == set(real_event.hits["hit_id"])
    assert set(trained_finder.last_timing) == {"graph_s", "filter_s", "inference_s", "tracks_s"}
    # the edge filter prunes the graph before the GNN
    assert 0 < trained_finder.last_edges["gnn"] < trained_finder.last_edges["graph"]
    score = trackml_score(real_event.truth, sub)
    assert score > MIN_SCORE_REAL
    edges = evaluate_edges(trained_finder, [real_event], pt_min=1.0)
    assert edges["efficiency"] > MIN_EDGE_EFFICIENCY_REAL
    assert edges["purity"] > MIN_EDGE_PURITY_REAL
    # the registry builds the same finder
    assert isinstance(make_finder("gnn"), GNNFinder)


def test_gnn_finder_never_reads_truth(real_event, trained_finder):
    blind = TrackingEvent(
        1, real_event.hits, real_event.particles.iloc[:0], real_event.truth.iloc[:0]
    )
    a = trained_finder.find(real_event)
    b = trained_finder.find(blind)
    pd.testing.assert_frame_equal(a, b)


def test_empty_event_gives_an_empty_submission(real_event, trained_finder):
    empty = TrackingEvent(
        2, real_event.hits.iloc[:0], real_event.particles.iloc[:0], real_event.truth.iloc[:0]
    )
    sub = trained_finder.find(empty)
    assert len(sub) == 0
    assert list(sub.columns) == ["hit_id", "track_id"]


def test_shipped_gpu_trained_finder_reaches_the_exatrkx_level_on_a_fresh_event():
    """The finder trained on an H100 at MU = 200 (benchmarks/tracking/gnn_mu200_h100, shipped
    without its optimiser state) on a new simulated ttbar event at MU = 20, on the CPU: edge
    efficiency and purity for pT > 1 GeV >= 97% at its threshold 0.9 (measured 98.8% / 99.7%
    on ~1,100 true edges: the margins are > 5 standard deviations), and the tracks it builds
    hold >= 95% of the pT > 1 GeV particles (measured 99.0%, no fake track)."""
    from colliderlab.tracking.score import track_metrics
    from colliderlab.tracking.simulate import generate_events

    shipped = Path(__file__).parents[1] / "benchmarks" / "tracking" / "gnn_mu200_h100"
    finder = GNNFinder(checkpoint=shipped, threshold=0.9)
    assert finder.config.cells
    assert finder.config.hidden == 128
    event = next(generate_events(1, mu=20, seed=8))
    edges = evaluate_edges(finder, [event], pt_min=1.0)
    assert edges["n_true"] > 800
    assert edges["efficiency"] >= 0.97
    assert edges["purity"] >= 0.97
    tracks = track_metrics(event, finder.find(event), pt_min=1.0)
    assert tracks["efficiency"] >= 0.95
    assert tracks["fake_rate"] <= 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_and_finding_on_a_gpu_agree_with_the_cpu(real_event, tmp_path):
    """The CUDA path (run where a GPU is present): the same training on the GPU and on the CPU
    gives the same losses and edge scores up to TF32 rounding, and the GPU run's checkpoint is
    read on the CPU."""
    config = TrainConfig(epochs=2, lr=5e-3, **TINY)
    cpu = train([real_event], tmp_path / "cpu", config, device="cpu")
    gpu = train([real_event], tmp_path / "gpu", config, device="cuda")
    assert gpu["device"] != "cpu"
    assert gpu["peak_gpu_memory_gb"] > 0
    for a, b in zip(cpu["history"], gpu["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
    on_cpu = GNNFinder(checkpoint=tmp_path / "gpu", device="cpu")
    on_gpu = GNNFinder(checkpoint=tmp_path / "gpu", device="cuda")
    edges_a, scores_a = on_cpu.edge_scores(real_event)
    edges_b, scores_b = on_gpu.edge_scores(real_event)
    np.testing.assert_array_equal(edges_a, edges_b)
    # edges at the filter's cut may fall on either side of it: at most 0.1% differ
    assert np.mean(np.abs(scores_a - scores_b) > 0.02) < 1e-3
