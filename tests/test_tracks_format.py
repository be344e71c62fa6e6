import numpy as np
import pytest

from gnn4itk.tracks import join_tracks, labels_to_track_ids, split_labels, track_ids_to_tracks


def test_split_and_join_are_inverse():
    tracks = [np.array([4, 1, 7]), np.array([0, 2, 3, 9])]
    labels = join_tracks(tracks)
    np.testing.assert_array_equal(labels, [4, 1, 7, -1, 0, 2, 3, 9, -1])
    back = split_labels(labels)
    assert len(back) == 2
    for a, b in zip(back, tracks):
        np.testing.assert_array_equal(a, b)


def test_empty_labels():
    np.testing.assert_array_equal(join_tracks([]), [-1])
    assert split_labels([-1]) == []
    assert split_labels([]) == []


def test_track_ids():
    ids = labels_to_track_ids([2, 0, -1, 3, 4, 5, -1], num_hits=7)
    np.testing.assert_array_equal(ids, [0, -1, 0, 1, 1, 1, -1])
    tracks = track_ids_to_tracks(ids)
    np.testing.assert_array_equal(tracks[0], [0, 2])
    np.testing.assert_array_equal(tracks[1], [3, 4, 5])
    assert track_ids_to_tracks(np.full(3, -1)) == []


def test_track_ids_reject_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        labels_to_track_ids([0, 9, -1], num_hits=3)
    with pytest.raises(ValueError, match="reuses"):
        labels_to_track_ids([0, 1, -1, 1, 2, -1], num_hits=3)


def test_track_set_ignores_row_order_and_takes_tensors():
    import torch

    from gnn4itk.tracks import track_set

    labels = [3, 1, 2, -1, 7, 5, -1]
    assert track_set(labels) == {frozenset({1, 2, 3}), frozenset({5, 7})}
    assert track_set(torch.tensor([1, 3, 2, -1, 5, 7, -1])) == track_set(labels)
    assert track_set([-1]) == set()
