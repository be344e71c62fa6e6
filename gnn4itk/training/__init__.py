"""Training of the learned stages with Lightning (``gnn4itk train <stage> --config configs/train_*.yaml``).

* :mod:`~gnn4itk.training.truth` -- truth edges, target particles, edge labels.
* :mod:`~gnn4itk.training.losses` -- hinge loss (metric learning), weighted BCE (filter, GNN).
* :mod:`~gnn4itk.training.graph_sources` -- pluggable graphs for the filter and GNN stages.
* :mod:`~gnn4itk.training.data` -- events to tensors, the Lightning data module.
* :mod:`~gnn4itk.training.modules` -- Lightning modules; checkpoints keep acorn's layout.
* :mod:`~gnn4itk.training.config` -- YAML configs and the training driver.
* :mod:`~gnn4itk.training.toy` -- tiny straight-track events for tests and CPU smoke runs.
"""
