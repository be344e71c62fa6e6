"""The module-map graph builder equals the plain reference edge set exactly (random and real events)."""

import numpy as np
import pytest
import torch

from module_map.build import BuildOptions, build_module_map, ordered_track_hits, select_particles
from module_map.graph_builder import ModuleMapGraphBuilder
from module_map.synthetic import synthetic_event, synthetic_events
from tests.module_map_reference import POSITIONS, reference_edges, trackml_event, with_noise


def _inputs(event):
    positions = event.hits[POSITIONS].to_numpy(np.float32)
    return positions, event.hits["module_id"].to_numpy().copy()


def _edges(builder, positions, module, device="cpu"):
    edge_index, edge_attr = builder(torch.from_numpy(positions).to(device), torch.from_numpy(module).to(device))
    assert edge_index.dtype == torch.int64 and edge_attr.dtype == torch.float32
    assert edge_attr.shape == (edge_index.shape[1], 6)
    pairs = set(zip(edge_index[0].tolist(), edge_index[1].tolist()))
    assert len(pairs) == edge_index.shape[1], "duplicate edges"
    return pairs


@pytest.fixture(scope="module")
def synthetic_map():
    module_map, _ = build_module_map(synthetic_events(30, n_particles=1500, seed=100), progress=False)
    return module_map


@pytest.mark.parametrize("chunks,host_compaction", [((0, 0), True), ((0, 0), False), ((1 << 22, 1 << 21), True),
                                                   ((64, 32), True), ((64, 32), False)])
def test_builder_equals_reference_on_noisy_synthetic_event(synthetic_map, chunks, host_compaction, device):
    """``host_compaction=False`` runs the CUDA path of the join (failed side matches flagged) on the CPU."""
    event = with_noise(synthetic_event(n_particles=400, seed=7), fraction=0.5, seed=3)
    positions, module = _inputs(event)
    builder = ModuleMapGraphBuilder(synthetic_map, pair_chunk=chunks[0], triplet_chunk=chunks[1]).to(device)
    builder.host_compaction = host_compaction
    with pytest.warns(UserWarning, match="unknown to the map"):
        got = _edges(builder, positions, module, device)
    want = reference_edges(synthetic_map, positions, module)
    assert len(want) > 500
    assert got == want


@pytest.mark.parametrize("deta_sign,dydx", [("outer_minus_inner", "mmg"), ("inner_minus_outer", "difference")])
def test_scripted_builder_equals_reference_on_trackml(deta_sign, dydx):
    event = trackml_event()
    options = BuildOptions(deta_sign=deta_sign, dydx_convention=dydx, tolerance=1e-4, min_occurrence=1)
    module_map, _ = build_module_map([event], options, progress=False)
    noisy = with_noise(event, fraction=1.0, seed=5)
    positions, module = _inputs(noisy)
    scripted = torch.jit.script(ModuleMapGraphBuilder(module_map))
    got = _edges(scripted, positions, module)
    assert got == reference_edges(module_map, positions, module)


def test_zero_dr_and_dx_are_handled_alike():
    """Spacepoints moved so that consecutive track hits share r or x exactly: the map then holds the
    finite FLT_MAX stand-ins, and the builder still equals the reference."""
    event = trackml_event()
    rows, owner = ordered_track_hits(event, select_particles(event.particles, BuildOptions()))
    pairs = np.flatnonzero(owner[1:] == owner[:-1])[::7]
    hits = event.hits.copy()
    r_col, x_col = hits.columns.get_loc("r"), hits.columns.get_loc("x")
    hits.iloc[rows[pairs[::2] + 1], r_col] = hits.iloc[rows[pairs[::2]], r_col].to_numpy()
    hits.iloc[rows[pairs[1::2] + 1], x_col] = hits.iloc[rows[pairs[1::2]], x_col].to_numpy()
    event.hits = hits
    module_map, _ = build_module_map([event], progress=False)
    assert (np.abs(module_map.triplets["z0max_12"]) == np.finfo(np.float32).max).any()
    assert (np.abs(module_map.triplets["diff_dydx_max"]) == np.finfo(np.float32).max).any()
    positions, module = _inputs(event)  # not re-derived: r no longer follows from x, y on purpose
    got = _edges(torch.jit.script(ModuleMapGraphBuilder(module_map)), positions, module)
    assert got == reference_edges(module_map, positions, module)
    degenerate = {(int(rows[i]), int(rows[i + 1])) for i in pairs}
    assert len(degenerate & got) > 0.9 * len(degenerate)


def test_every_true_edge_of_the_map_events_is_found():
    """A map contains the exact values of its own tracks, so the graph of a training event has all of
    their consecutive edges: this checks that creation and building compute bit-identical quantities."""
    event = trackml_event()
    module_map, _ = build_module_map([event], progress=False)
    rows, owner = ordered_track_hits(event, select_particles(event.particles, BuildOptions()))
    counts = {p: n for p, n in zip(*np.unique(owner, return_counts=True))}
    true_edges = {(int(rows[i]), int(rows[i + 1])) for i in range(len(rows) - 1)
                  if owner[i] == owner[i + 1] and counts[owner[i]] >= 3}
    assert len(true_edges) > 1000
    got = _edges(ModuleMapGraphBuilder(module_map), *_inputs(event))
    assert true_edges <= got


def test_unknown_and_non_integer_modules_stay_isolated(synthetic_map):
    event = synthetic_event(n_particles=300, seed=11)
    positions, module = _inputs(event)
    builder = torch.jit.script(ModuleMapGraphBuilder(synthetic_map))
    baseline = _edges(builder, positions, module.astype(np.float32))
    known_unknown = builder.last_unknown
    ids = module.astype(np.float32)
    rng = np.random.default_rng(0)
    spoiled = rng.choice(len(ids), 60, replace=False)
    ids[spoiled[:20]] += 0.5  # not an exact integer
    ids[spoiled[20:40]] = -3.0  # negative
    ids[spoiled[40:]] = float(synthetic_map.module_index.max() + 10)  # beyond the map
    with pytest.warns(UserWarning, match="unknown to the map"):
        got = _edges(builder, positions, ids)
    assert builder.last_unknown == known_unknown + len(np.setdiff1d(spoiled, np.flatnonzero(
        ~np.isin(module, synthetic_map.module_index))))
    touched = {h for edge in got for h in edge}
    assert not touched & set(spoiled.tolist())
    assert got < baseline
    placed = module.copy()
    placed[spoiled] = -1  # the reference never matches -1 to a map module
    assert got == reference_edges(synthetic_map, positions, placed)


def test_empty_and_trivial_inputs(synthetic_map):
    builder = torch.jit.script(ModuleMapGraphBuilder(synthetic_map))
    edge_index, edge_attr = builder(torch.zeros((0, 6)), torch.zeros(0, dtype=torch.int64))
    assert edge_index.shape == (2, 0) and edge_attr.shape == (0, 6)
    with pytest.raises(Exception, match="positions must be float32"):
        builder(torch.zeros((3, 4)), torch.zeros(3, dtype=torch.int64))


def test_wide_windows_equal_reference(device):
    """Windows widened by a tolerance: many more candidate triplet rows, so a wrong join of the two pair
    sides (e.g. a join key that mixes up middle hits) shows up as extra edges."""
    events = synthetic_events(20, n_particles=1000, seed=200)
    module_map, _ = build_module_map(events, BuildOptions(tolerance=0.02), progress=False)
    event = with_noise(synthetic_event(n_particles=600, seed=9), fraction=1.0, seed=4)
    positions, module = _inputs(event)
    want = reference_edges(module_map, positions, module)
    assert len(want) > 1000
    for host_compaction in (True, False):
        builder = ModuleMapGraphBuilder(module_map, 4096, 4096).to(device)
        builder.host_compaction = host_compaction
        with pytest.warns(UserWarning, match="unknown to the map"):
            got = _edges(torch.jit.script(builder), positions, module, device)
        assert got == want


def test_map_without_triplets_gives_no_edges(synthetic_map):
    """Every edge needs a supporting triplet: with the triplet table emptied the doublet stage still runs
    (its candidates pass) but no edge may come out."""
    import copy

    event = synthetic_event(n_particles=300, seed=12)
    positions, module = _inputs(event)
    builder = torch.jit.script(ModuleMapGraphBuilder(synthetic_map))
    assert len(_edges(builder, positions, module)) > 100
    empty = copy.copy(synthetic_map)
    empty.triplets = {name: column[:0] for name, column in synthetic_map.triplets.items()}
    edge_index, edge_attr = torch.jit.script(ModuleMapGraphBuilder(empty))(torch.from_numpy(positions),
                                                                           torch.from_numpy(module))
    assert edge_index.shape == (2, 0) and edge_attr.shape == (0, 6)


def test_scripts_with_torch_geometric_imported(synthetic_map):
    """torch_geometric replaces torch.index_select by a Python function on import; the builder must still
    script (the served and CLI pipelines import both) and run on the CPU."""
    pytest.importorskip("torch_geometric")
    event = synthetic_event(n_particles=200, seed=13)
    positions, module = _inputs(event)
    eager = _edges(ModuleMapGraphBuilder(synthetic_map), positions, module)
    assert _edges(torch.jit.script(ModuleMapGraphBuilder(synthetic_map)), positions, module) == eager
