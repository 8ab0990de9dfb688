"""Tests for detkit.layers.nms: batched NMS over threads keeps exactly what one call keeps."""
import pytest
import torch
from torchvision.ops import batched_nms

from detkit.layers import batched_nms as detkit_batched_nms
from detkit.layers import batched_nms_parallel
from detkit.layers import nms as nms_module


def _data(n=3000, groups=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 50 + 1], dim=1)
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, groups, (n,), generator=g)
    return boxes, scores, idxs


def test_same_kept_boxes_in_score_order(monkeypatch):
    boxes, scores, idxs = _data()
    expected = batched_nms(boxes, scores, idxs, 0.5)
    calls = []
    real = nms_module.parallel_map
    monkeypatch.setattr(nms_module, "parallel_map", lambda fn, items: calls.append(len(items)) or real(fn, items))
    keep = batched_nms_parallel(boxes, scores, idxs, 0.5, num_threads=2)
    assert calls == [2]
    assert torch.equal(keep, expected)  # scores are distinct, so the order is unique
    assert (scores[keep][1:] <= scores[keep][:-1]).all()


def test_buckets_hold_whole_groups_balanced():
    idxs = torch.tensor([0] * 6 + [1] * 3 + [2] * 3 + [3] * 1)
    buckets = nms_module._buckets(idxs, 2)
    groups = [set(idxs[b].tolist()) for b in buckets]
    # Largest first onto the lightest bucket: 0 -> b0 (6), 1 -> b1 (3), 2 -> b1 (6), 3 -> b0 (first of the tie).
    assert groups == [{0, 3}, {1, 2}]
    assert sorted(torch.cat(buckets).tolist()) == list(range(13))


def test_small_inputs_one_call(monkeypatch):
    boxes, scores, idxs = _data(n=500)
    monkeypatch.setattr(nms_module, "parallel_map", lambda fn, items: (_ for _ in ()).throw(AssertionError("pooled")))
    assert torch.equal(batched_nms_parallel(boxes, scores, idxs, 0.6, num_threads=2), batched_nms(boxes, scores, idxs, 0.6))
    one_group = torch.zeros(3000, dtype=torch.int64)
    boxes, scores, _ = _data()
    assert torch.equal(batched_nms_parallel(boxes, scores, one_group, 0.6, num_threads=2),
                       batched_nms(boxes, scores, one_group, 0.6))


def test_mixed_precision_scores():
    boxes, scores, idxs = _data()
    low = scores.bfloat16()  # many ties: compare the kept sets, and the order by score
    keep = batched_nms_parallel(boxes, low, idxs, 0.5, num_threads=2)
    expected = batched_nms(boxes, low.float(), idxs, 0.5)
    assert sorted(keep.tolist()) == sorted(expected.tolist())
    assert (low[keep][1:] <= low[keep][:-1]).all()


def test_batched_nms_detectron2_name_hand_case():
    # Group 0: box 1 overlaps box 0 by 81 / 100 = 0.81 > 0.5 and scores lower -> dropped. Box 2 is box 0 again,
    # but in group 1, so it stays. Kept by decreasing score: 0 (0.9), 2 (0.8).
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [0., 0., 10., 10.]])
    scores, idxs = torch.tensor([0.9, 0.7, 0.8]), torch.tensor([0, 0, 1])
    assert detkit_batched_nms(boxes, scores, idxs, 0.5).tolist() == [0, 2]
    assert detkit_batched_nms(boxes, scores, idxs, 0.9).tolist() == [0, 2, 1]  # 0.81 <= 0.9: all kept
    # Half-precision boxes are run in float32 (torchvision's CPU kernel has no float16).
    assert detkit_batched_nms(boxes.half(), scores, idxs, 0.5).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"\(N, 4\) XYXY boxes, got shape \(3, 5\)"):
        detkit_batched_nms(torch.zeros(3, 5), scores, idxs, 0.5)
