"""The browser's index and queries on the hand-made dataset of conftest.py (expected values worked out there)."""
import numpy as np
import pytest
import torch

from detkit.browser import QueryError, build_index, image_detail, list_images, summary
from detkit.browser.index import PRED_CATEGORIES, PRED_STATUSES
from detkit.browser.queries import ImageQuery, parse_image_query
from detkit.evaluation.reports import match_image


def _indices(doc):
    return [im["index"] for im in doc["images"]]


def _counts(doc):
    return {im["index"]: im["counts"] for im in doc["images"]}


def test_counts_at_the_default_threshold(toy_index):
    doc = list_images(toy_index, ImageQuery(score=0.25))
    assert doc["total"] == 5 and doc["pages"] == 1 and _indices(doc) == [0, 1, 2, 3, 4]
    assert _counts(doc) == {
        0: {"gt": 2, "pred": 6, "tp": 2, "fp": 4, "missed": 0},
        1: {"gt": 1, "pred": 0, "tp": 0, "fp": 0, "missed": 1},
        2: {"gt": 0, "pred": 1, "tp": 0, "fp": 1, "missed": 0},
        3: {"gt": 1, "pred": 1, "tp": 1, "fp": 0, "missed": 0},
        4: {"gt": 1, "pred": 1, "tp": 0, "fp": 0, "missed": 1},  # the crowd box is neither counted nor missed
    }


@pytest.mark.parametrize("score, expected", [
    (0.5, {"pred": 4, "tp": 2, "fp": 2, "missed": 0}),
    (0.75, {"pred": 2, "tp": 1, "fp": 1, "missed": 1}),  # B was taken by p5 (0.7): missed above 0.7
    (0.95, {"pred": 0, "tp": 0, "fp": 0, "missed": 2}),
])
def test_threshold_moves_counts_and_missed_boxes(toy_index, score, expected):
    counts = _counts(list_images(toy_index, ImageQuery(score=score)))[0]
    assert {k: counts[k] for k in expected} == expected


def test_sorting_by_false_positives_and_by_missed_boxes(toy_index):
    assert _indices(list_images(toy_index, ImageQuery(score=0.25, sort="fp"))) == [0, 2, 1, 4, 3]
    assert _indices(list_images(toy_index, ImageQuery(score=0.25, sort="missed"))) == [1, 4, 0, 2, 3]


def test_errors_only_and_class_filter(toy_index):
    assert _indices(list_images(toy_index, ImageQuery(score=0.25, errors_only=True))) == [0, 1, 2, 4]
    birds = list_images(toy_index, ImageQuery(score=0.25, classes=[2]))
    assert _indices(birds) == [0, 1]
    assert _counts(birds)[0] == {"gt": 0, "pred": 1, "tp": 0, "fp": 1, "missed": 0}
    assert [b["class"] for b in birds["images"][0]["pred"]] == [2] and birds["images"][0]["gt"] == []
    assert _indices(list_images(toy_index, ImageQuery(score=0.25, classes=[1]))) == [0, 2, 3]
    # dogs with errors above 0.45: image 2's 0.95 background box only
    assert _indices(list_images(toy_index, ImageQuery(score=0.45, classes=[1], errors_only=True))) == [2]


def test_paging(toy_index):
    pages = [list_images(toy_index, ImageQuery(score=0.25, page=p, per_page=2)) for p in (1, 2, 3, 4)]
    assert [_indices(p) for p in pages] == [[0, 1], [2, 3], [4], []]
    assert all(p["total"] == 5 and p["pages"] == 3 for p in pages)


def test_detail_rows_carry_status_category_iou_and_partner(toy_index):
    d = image_detail(toy_index, 0, 0.25)
    rows = {p["id"]: (p["status"], p["category"], p["gt"], p["iou"]) for p in d["pred"]}
    assert rows == {0: ("tp", "", 0, 1.0), 1: ("fp", "dupe", 0, 0.95), 2: ("fp", "cls", 1, 1.0),
                    3: ("fp", "bkg", None, None), 4: ("fp", "loc", 0, 0.333), 5: ("tp", "", 1, 1.0)}
    assert [(g["state"], g["pred"], g["iou"]) for g in d["gt"]] == [("matched", 0, 1.0), ("matched", 5, 1.0)]
    high = image_detail(toy_index, 0, 0.75)
    assert [p["id"] for p in high["pred"]] == [0, 1]
    assert [(g["state"], g["pred"], g["category"]) for g in high["gt"]] == [("matched", 0, ""), ("missed", None, "missed")]
    crowd = image_detail(toy_index, 4, 0.25)
    assert [g["state"] for g in crowd["gt"]] == ["crowd", "missed"] and crowd["pred"][0]["status"] == "ignored"
    assert image_detail(toy_index, 3, 0.25)["pred"][0]["iou"] == 0.938  # 30 / 32, rounded


def test_summary_counts_classes_and_scores_ap(toy_index):
    s = summary(toy_index)
    assert (s["num_images"], s["num_boxes"], s["num_crowd"], s["num_predictions"]) == (5, 5, 1, 9)
    assert s["boxes_per_class"] == {"cat": 2, "dog": 2, "bird": 1}
    # dog, by hand: detections 0.95 fp, 0.7 tp, 0.5 tp (IoU 0.9375), 0.4 fp; precision 2/3 at every recall for
    # IoU 0.50..0.90, and at 0.95 (0.5 no longer a match) precision 1/2 up to recall 0.5: 51 of 101 points.
    assert s["ap"]["per_class"]["dog"] == pytest.approx(100 * (9 * 2 / 3 + 0.5 * 51 / 101) / 10)
    assert s["ap"]["per_class"]["bird"] == 0.0
    assert s["ap"]["overall"]["APl"] is None  # no large box: COCOeval's NaN becomes null, as JSON requires


def test_dataset_without_results_shows_ground_truth_only(toy_dataset):
    index = build_index(toy_dataset)
    doc = list_images(index, ImageQuery(score=0.25))
    assert [c["missed"] for c in _counts(doc).values()] == [0] * 5
    assert [c["gt"] for c in _counts(doc).values()] == [2, 1, 0, 1, 1]
    assert summary(index)["ap"] is None and summary(index)["has_results"] is False
    assert [g["state"] for g in image_detail(index, 4, 0.0)["gt"]] == ["crowd", "gt"]


@pytest.mark.parametrize("params, key", [
    ({"score": ["1.5"]}, "score"), ({"score": ["abc"]}, "score"), ({"sort": ["name"]}, "sort"),
    ({"classes": ["3"]}, "classes"), ({"classes": ["cat"]}, "classes"), ({"page": ["0"]}, "page"),
    ({"per_page": ["501"]}, "per_page"), ({"errors_only": ["yes"]}, "errors_only"),
])
def test_bad_query_parameters_are_named(toy_index, params, key):
    with pytest.raises(QueryError, match=f"^{key}="):
        parse_image_query(params, toy_index)


def test_thresholding_after_matching_equals_matching_at_the_threshold():
    """The index matches once without a threshold; at every threshold its view must equal the reports'
    match_image run at that threshold."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        g, n = int(torch.randint(0, 6, (1,), generator=gen)), int(torch.randint(0, 12, (1,), generator=gen))
        xy = torch.rand(g + n, 2, generator=gen) * 40
        wh = 5 + torch.rand(g + n, 2, generator=gen) * 20
        boxes = torch.cat([xy, xy + wh], 1)
        # predictions near the ground truth so that matches, duplicates and class errors all happen
        if g:
            near = torch.randint(0, g, (n,), generator=gen)
            boxes[g:] = boxes[near] + torch.randn(n, 4, generator=gen) * 3
        gt_boxes, pred_boxes = boxes[:g], boxes[g:]
        gt_classes, pred_classes = torch.randint(0, 3, (g,), generator=gen), torch.randint(0, 3, (n,), generator=gen)
        scores = torch.rand(n, generator=gen)
        full = match_image(pred_boxes, scores, pred_classes, gt_boxes, gt_classes, score_thresh=float("-inf"))
        for t in (0.0, 0.3, 0.6, 0.9):
            ref = match_image(pred_boxes, scores, pred_classes, gt_boxes, gt_classes, score_thresh=t)
            kept = (scores >= t).tolist()
            assert [s for s, k in zip(full.status, kept) if k] == [s for s, k in zip(ref.status, kept) if k]
            assert [c for c, k in zip(full.category, kept) if k] == [c for c, k in zip(ref.category, kept) if k]
            took = full.matched_gt >= 0
            match_score = torch.full((g,), float("-inf"))
            match_score[full.matched_gt[took]] = scores[took]
            assert torch.equal(match_score < t, ref.gt_missed), (trial, t)


def test_results_for_unknown_images_are_refused(toy_dataset):
    with pytest.raises(KeyError, match=r"image ids \[999\]"):
        build_index(toy_dataset, [{"image_id": 999, "category_id": 0, "score": 0.5, "bbox": [0, 0, 5, 5]}])


def test_index_arrays_are_grouped_by_image(toy_index):
    assert toy_index.gt_start.tolist() == [0, 2, 3, 3, 4, 6]
    assert toy_index.pred_start.tolist() == [0, 6, 6, 7, 8, 9]
    assert np.array_equal(toy_index.pred_image, [0, 0, 0, 0, 0, 0, 2, 3, 4])
    assert np.array_equal(toy_index.gt_image, [0, 0, 1, 3, 4, 4])
    assert [PRED_STATUSES[s] for s in toy_index.pred_status] == ["tp", "fp", "fp", "fp", "fp", "tp", "fp", "tp",
                                                                 "ignored"]
    assert [PRED_CATEGORIES[c] for c in toy_index.pred_category[:6]] == ["", "dupe", "cls", "bkg", "loc", ""]
