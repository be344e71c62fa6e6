"""gnn4itk: PyTorch-native GNN4ITk track finding, served through NVIDIA Triton."""

__version__ = "0.1.0"
