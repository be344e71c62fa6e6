"""unique_edges: the fast form of torch.unique(edge_index, dim=1) used by the pipelines and training."""

import torch

from gnn4itk.edge_features import unique_edges
from gnn4itk.stages import orient_inner_to_outer


def test_unique_edges_equals_torch_unique_dim1():
    generator = torch.Generator().manual_seed(3)
    for n, e in [(1, 4), (7, 50), (1000, 20000)]:
        edges = torch.randint(0, n, (2, e), generator=generator)
        assert torch.equal(unique_edges(edges, n), torch.unique(edges, dim=1))
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert unique_edges(empty, 5).shape == (2, 0)
    scripted = torch.jit.script(unique_edges)
    edges = torch.randint(0, 300, (2, 4000), generator=generator)
    assert torch.equal(scripted(edges, 300), torch.unique(edges, dim=1))


def test_orient_inner_to_outer_deduplicates_both_directions():
    r2z2 = torch.tensor([5.0, 1.0, 3.0, 3.0])
    edges = torch.tensor([[0, 1, 2, 3, 2, 1, 1], [1, 0, 3, 2, 2, 2, 2]])
    # 0<->1 becomes 1->0 once; 2<->3 (equal R) goes from the lower row; 2->2 is a self-loop
    assert orient_inner_to_outer(edges, r2z2).tolist() == [[1, 1, 2], [0, 2, 3]]
