"""The one place that defines GNN4ITk's default cuts, limits and radius-graph settings.

Every default below is used by reference (stages, configuration loader, training, track building, the
radius graph, the model-repository writer); a configuration value overrides it for one pipeline, and
what a pipeline actually runs with is what :meth:`gnn4itk.pipeline.Pipeline.settings` reports and the
exported ``config.pbtxt`` records. Only plain Python values here: this module imports nothing, so any
module (TorchScript code included) can take its defaults from it.
"""

# --- The GNN4ITk cuts -----------------------------------------------------------------------------
R_MAX = 0.12
"""Radius of the metric-learning graph in the embedding space."""
K_MAX = 1000
"""Most neighbours per spacepoint in the metric-learning graph."""
FILTER_CUT = 0.05
"""The filter keeps edges with ``score > filter_cut``."""
CC_CUT = 0.01
"""Track building keeps edges with ``score > cc_cut``."""
WALK_MIN = 0.1
"""The walkthrough keeps a spacepoint's best outgoing edge when ``score >= walk_min``."""
WALK_MAX = 0.6
"""The walkthrough keeps any edge with ``score > walk_max``."""
TRACK_BUILDING_MODE = "cc_and_walk"
"""Track building: connected components + walkthrough (``gnn4itk.track_building.MODES``)."""

# --- Event limits (the served interface) ----------------------------------------------------------
MAX_SPACEPOINTS = 1_000_000
"""Larger events are refused with an error rather than risking running out of memory."""
MIN_SPACEPOINTS = 3
"""Events with fewer spacepoints get LABELS ``[-1]`` (no track) without running the stages."""
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]*$"
"""What a pipeline (Triton model) or stage name may look like."""

# --- Radius graph (gnn4itk.models.radius_graph) ---------------------------------------------------
RADIUS_METHOD = "tree"
"""``"tree"`` (k-d tree leaves), ``"grid"`` or ``"brute"``: the same edges, different speed."""
RADIUS_GRID_DIMS = 4
"""``"grid"``: embedding coordinates binned."""
RADIUS_MAX_CANDIDATES = 1 << 26
"""``"tree"``, ``"grid"``: candidate pairs examined at once (fewer chunks; ~1 GiB peak)."""
RADIUS_BLOCK_ROWS = 4096
"""``"brute"``: query rows per distance block."""
RADIUS_ROTATE = True
"""Search on the principal axes of the embedding."""
RADIUS_LEAF_SIZE = 32
"""``"tree"``: points per leaf."""
RADIUS_LEVELS_PER_STEP = 2
"""``"tree"``: tree levels descended per step."""
