"""Box-proposal recall on hand-made cases with hand-computed values."""
import pytest
import torch

from detkit.evaluation.proposal_evaluation import AREA_RANGES, box_proposal_metrics, evaluate_box_proposals

# Ground truth of image 1: A small (area 100), B large (10000), C medium (2500).
GT = torch.tensor([[0, 0, 10, 10], [0, 0, 100, 100], [200, 200, 250, 250]], dtype=torch.float32)
AREAS = torch.tensor([100.0, 10000.0, 2500.0])
# Proposals, best first: IoU 0.5 with A, 0.72 with B, 0.92 with C, then an exact copy of A.
PROPS = torch.tensor([[0, 0, 10, 5], [0, 0, 100, 72], [200, 200, 250, 246], [0, 0, 10, 10]], dtype=torch.float32)


def test_hand_made_recall():
    # All 4 proposals: greedy takes A<->copy (1.0: 10 of 10 thresholds), C (0.92: 9), B (0.72: 5) -> 24 / 30.
    out = evaluate_box_proposals([PROPS], [GT], [AREAS])
    assert float(out["ar"]) == pytest.approx(0.8, abs=1e-6)
    assert int(out["num_pos"]) == 3
    assert out["gt_overlaps"].tolist() == pytest.approx([0.72, 0.92, 1.0], abs=1e-6)
    assert out["recalls"].tolist() == pytest.approx([1.0] * 5 + [2 / 3] * 4 + [1 / 3], abs=1e-6)
    # Top 3 only: A is covered at 0.5 (1 threshold) -> 15 / 30.
    assert float(evaluate_box_proposals([PROPS], [GT], [AREAS], limit=3)["ar"]) == pytest.approx(0.5, abs=1e-6)
    assert float(evaluate_box_proposals([PROPS], [GT], [AREAS], area="small", limit=3)["ar"]) == \
        pytest.approx(0.1, abs=1e-6)
    assert float(evaluate_box_proposals([PROPS], [GT], [AREAS], area="medium")["ar"]) == pytest.approx(0.9, abs=1e-6)
    assert float(evaluate_box_proposals([PROPS], [GT], [AREAS], area="large")["ar"]) == pytest.approx(0.5, abs=1e-6)


def test_one_to_one_matching_and_skipped_images():
    # One proposal equal to D covers D (1.0) but not E too (IoU 0.95): E stays uncovered -> 10 / 20.
    d_e = torch.tensor([[0, 0, 20, 20], [0, 0, 20, 19]], dtype=torch.float32)
    areas = torch.tensor([400.0, 380.0])
    out = evaluate_box_proposals([d_e[:1]], [d_e], [areas])
    assert float(out["ar"]) == pytest.approx(0.5, abs=1e-6)
    # As in detectron2, an image without proposals is skipped: its ground truth is not counted.
    both = evaluate_box_proposals([d_e[:1], torch.zeros(0, 4)], [d_e, GT], [areas, AREAS])
    assert int(both["num_pos"]) == 2 and float(both["ar"]) == pytest.approx(0.5, abs=1e-6)
    # Batched over several images with different sizes: same as image by image.
    batched = evaluate_box_proposals([PROPS, d_e[:1]], [GT, d_e], [AREAS, areas])
    assert float(batched["ar"]) == pytest.approx((24 + 10) / 50, abs=1e-6)
    # No ground truth in a range gives NaN.
    nan = evaluate_box_proposals([d_e[:1]], [d_e], [areas], area="large")
    assert torch.isnan(nan["ar"])


def test_metric_names_and_bad_area():
    res = box_proposal_metrics([PROPS], [GT], [AREAS], limits=(3, 1000))
    assert res == pytest.approx({"AR@3": 50.0, "ARs@3": 10.0, "ARm@3": 90.0, "ARl@3": 50.0,
                                 "AR@1000": 80.0, "ARs@1000": 100.0, "ARm@1000": 90.0, "ARl@1000": 50.0}, abs=1e-4)
    with pytest.raises(ValueError, match="Unknown proposal area range 'tiny'"):
        evaluate_box_proposals([PROPS], [GT], [AREAS], area="tiny")


def _loop_reference(props, gts, areas, area_range, limit):
    """Image by image, step by step: the greedy cover written out plainly."""
    overlaps, num_pos = [], 0
    for p, g, a in zip(props, gts, areas):
        if len(p) == 0 or len(g) == 0:
            continue
        g = g[(a >= area_range[0]) & (a <= area_range[1])]
        num_pos += len(g)
        if len(g) == 0:
            continue
        p = p[:limit]
        iou = torch.zeros(len(p), len(g))
        for i in range(len(p)):
            for j in range(len(g)):
                w = min(p[i, 2], g[j, 2]) - max(p[i, 0], g[j, 0])
                h = min(p[i, 3], g[j, 3]) - max(p[i, 1], g[j, 1])
                inter = max(float(w), 0.0) * max(float(h), 0.0)
                union = float((p[i, 2] - p[i, 0]) * (p[i, 3] - p[i, 1]) + (g[j, 2] - g[j, 0]) * (g[j, 3] - g[j, 1]))
                iou[i, j] = inter / (union - inter) if inter > 0 else 0.0
        for _ in range(min(len(p), len(g))):
            best_per_gt, best_prop = iou.max(dim=0)
            value, gt_index = best_per_gt.max(dim=0)
            overlaps.append(float(value))
            iou[best_prop[gt_index], :] = -1
            iou[:, gt_index] = -1
    thresholds = torch.arange(0.5, 0.95 + 1e-5, 0.05)
    ov = torch.tensor(overlaps)
    return float(torch.stack([(ov >= t).float().sum() / num_pos for t in thresholds]).mean())


def test_batched_matches_image_by_image_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    props, gts, areas = [], [], []
    for n_gt, n_prop in [(3, 12), (0, 5), (7, 4), (5, 0), (1, 20), (9, 15)]:
        xy, wh = torch.rand(n_gt, 2, generator=g) * 60, torch.rand(n_gt, 2, generator=g) * 100 + 2
        gts.append(torch.cat([xy, xy + wh], 1))
        areas.append(wh.prod(1))
        # proposals: jittered copies of the ground truth plus random boxes
        src = torch.randint(0, max(n_gt, 1), (n_prop,), generator=g)
        base = gts[-1][src] if n_gt else torch.zeros(n_prop, 4)
        jitter = torch.randn(n_prop, 4, generator=g) * 6
        box = base + jitter
        props.append(torch.cat([box[:, :2], torch.maximum(box[:, 2:], box[:, :2] + 1)], 1))
    for area in ("all", "small", "medium", "large"):
        for limit in (3, 100):
            got = float(evaluate_box_proposals(props, gts, areas, area=area, limit=limit)["ar"])
            ref = _loop_reference(props, gts, areas, AREA_RANGES[area], limit)
            assert (got != got and ref != ref) or got == pytest.approx(ref, abs=1e-6), (area, limit)
