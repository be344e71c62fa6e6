"""Readers and writers for event files: TrackML CSV, ACTS CSV, Parquet, GNN4ITk inference tensors."""
