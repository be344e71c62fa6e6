"""Non-GNN baselines scored with the same metrics as our pipelines (issue #16, section 2).

:mod:`gnn4itk.baseline.ckf`: ACTS's seeding + combinatorial Kalman filter + greedy ambiguity resolution,
run with pyacts on our stored events (Generic detector), tracks mapped back to our spacepoint rows.
"""
