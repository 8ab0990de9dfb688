"""detkit.utils.visualizer: detectron2's Visualizer, checked pixel by pixel on blank images.

The pixel rules used below, derived from the drawing parameters: matplotlib figures have 100 dpi,
so a point is 100/72 px. On an image under ~900 px a side the default font size is 10 // scale
points and a box outline is font_size / 4 * scale = 2.5 pt = 3.47 px wide, centred on the edge
(Agg may snap it by half a pixel): the pixels whose centres lie within half a pixel of an edge are
fully covered, those 3 px or more away are untouched.
"""
import matplotlib
import numpy as np
import pytest
import torch

from detkit.data.catalog import Metadata
from detkit.structures import Boxes, BoxMode, Instances
from detkit.utils.visualizer import ColorMode, VisImage, Visualizer

RED = [255, 0, 0]


@pytest.fixture(autouse=True)
def _default_dpi():
    with matplotlib.rc_context({"figure.dpi": 100}):
        yield


def _black(h=80, w=100):
    return np.zeros((h, w, 3), np.uint8)


def test_draw_box_colours_the_edges_only():
    out = Visualizer(_black()).draw_box((20, 10, 70, 50), alpha=1.0, edge_color=(1.0, 0.0, 0.0))
    assert isinstance(out, VisImage)
    img = out.get_image()
    assert img.shape == (80, 100, 3) and img.dtype == np.uint8
    for y, x in [(30, 19), (30, 20), (30, 69), (30, 70), (9, 45), (10, 45), (49, 45), (50, 45)]:
        assert img[y, x].tolist() == RED, (y, x)  # on the four edges
    for y, x in [(30, 16), (30, 24), (30, 45), (13, 45), (46, 45), (30, 66), (30, 74), (5, 5), (70, 90)]:
        assert img[y, x].tolist() == [0, 0, 0], (y, x)  # inside, outside


def test_untouched_pixels_are_the_image_and_scale_sets_the_size():
    img = np.random.default_rng(0).integers(0, 256, (57, 91, 3), dtype=np.uint8)
    assert np.array_equal(Visualizer(img).get_output().get_image(), img)
    assert Visualizer(img, scale=0.5).get_output().get_image().shape == (28, 45, 3)  # floor(57 / 2), floor(91 / 2)
    tripled = Visualizer(img, scale=3.0).get_output().get_image()
    assert tripled.shape == (171, 273, 3) and np.array_equal(tripled[1::3, 1::3], img)


def test_draw_box_at_scale_two():
    # Coordinates are the image's; the output doubles them. Font 10 // 2 = 5 pt, outline 1.25 * 2 = 2.5 pt.
    img = Visualizer(_black(), scale=2.0).draw_box((20, 10, 70, 50), alpha=1.0, edge_color="red").get_image()
    assert img.shape == (160, 200, 3)
    assert img[60, 39].tolist() == RED and img[60, 40].tolist() == RED  # left edge, x = 40
    assert img[60, 36].tolist() == [0, 0, 0] and img[60, 44].tolist() == [0, 0, 0]
    assert img[99, 90].tolist() == RED and img[100, 90].tolist() == RED  # bottom edge, y = 100


def test_draw_text_on_a_dark_box_below_and_right_of_its_position():
    white = np.full((80, 100, 3), 255, np.uint8)
    img = Visualizer(white).draw_text("Hi", (30, 20), horizontal_alignment="left").get_image().astype(int)
    ys, xs = np.nonzero((img != 255).any(axis=2))
    # the box's padding is 0.7 pt (1 px): nothing changes above or left of the position beyond that
    assert ys.min() >= 18 and xs.min() >= 28 and ys.min() <= 20 and xs.min() <= 30
    colours = {tuple(c) for c in img[ys, xs]}
    # black at alpha 0.8 over white: 255 * 0.2 = 51
    assert (51, 51, 51) in colours
    # "g" is (0, 0.5, 0); every channel is raised to 0.2 and the largest to 0.8 so it reads on black
    assert (51, 204, 51) in colours


class _Recorder:
    """Records draw_text's calls (text, position) and draws nothing, so the boxes can be read alone."""

    def __init__(self):
        self.calls = []

    def __call__(self, text, position, **kwargs):
        self.calls.append((text, tuple(float(v) for v in position)))


def test_draw_instance_predictions_labels_and_class_colours():
    inst = Instances((80, 100), pred_boxes=Boxes(torch.tensor([[5.0, 60.0, 15.0, 70.0], [20.0, 10.0, 70.0, 50.0]])),
                     scores=torch.tensor([0.25, 0.9]), pred_classes=torch.tensor([0, 1]))
    v = Visualizer(_black(), Metadata(thing_classes=["cat", "dog"]))
    v.draw_text = recorder = _Recorder()
    img = v.draw_instance_predictions(inst).get_image().astype(int)
    # Largest box first. The 50x40 box keeps its label at its top-left corner; the 10x10 one (area
    # under 1000) gets it below, at (x0, y1).
    assert recorder.calls == [("dog 90%", (20.0, 10.0)), ("cat 25%", (5.0, 70.0))]
    # class 1's colour: hue 0.618, saturation 0.85 -> (0.15, 0.398, 1.0); at alpha 0.5 over black -> (19, 51, 128)
    for y, x in [(30, 19), (30, 70), (50, 45)]:
        assert np.abs(img[y, x] - [19, 51, 128]).max() <= 1, (y, x, img[y, x])
    # class 0's colour: hue 0 -> (1.0, 0.15, 0.15); alpha 0.5 -> (128, 19, 19), on the small box's left edge
    assert np.abs(img[65, 5] - [128, 19, 19]).max() <= 1


def test_draw_instance_predictions_without_metadata_labels_class_ids():
    inst = Instances((80, 100), pred_boxes=Boxes(torch.tensor([[20.0, 10.0, 70.0, 50.0]])),
                     scores=torch.tensor([0.555]), pred_classes=torch.tensor([3]))
    v = Visualizer(_black())
    v.draw_text = recorder = _Recorder()
    v.draw_instance_predictions(inst)
    assert recorder.calls == [("3 56%", (20.0, 10.0))]


def test_image_bw_greys_the_background_of_predictions():
    img = np.zeros((80, 100, 3), np.uint8) + np.array([30, 60, 120], np.uint8)
    inst = Instances((80, 100), pred_boxes=Boxes(torch.tensor([[20.0, 10.0, 70.0, 50.0]])),
                     scores=torch.tensor([0.9]), pred_classes=torch.tensor([0]))
    grey = Visualizer(img, None, 1.0, ColorMode.IMAGE_BW).draw_instance_predictions(inst).get_image()
    assert grey[75, 95].tolist() == [70, 70, 70] and grey[30, 45].tolist() == [70, 70, 70]  # (30 + 60 + 120) / 3
    plain = Visualizer(img, None, 1.0, ColorMode.IMAGE).draw_instance_predictions(inst).get_image()
    assert plain[75, 95].tolist() == [30, 60, 120]


def test_draw_dataset_dict_reads_bbox_mode_and_marks_crowd():
    dic = {"image_id": 7, "annotations": [
        {"bbox": [20, 10, 50, 40], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1},
        {"bbox": [60, 55, 90, 75], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 1}]}
    v = Visualizer(_black(), Metadata(thing_classes=["cat", "dog"]))
    v.draw_text = recorder = _Recorder()
    img = v.draw_dataset_dict(dic).get_image().astype(int)
    # (20, 10, 50, 40) XYWH is (20, 10, 70, 50) XYXY; the 30x20 crowd box is small (height < 40):
    # its label goes below it, at (x0, y1) = (60, 75)... unless it touches the bottom (y1 >= 80 - 5):
    # it does, so the label goes to its top-right corner, (x1, y0) = (90, 55).
    assert recorder.calls == [("dog", (20.0, 10.0)), ("cat|crowd", (90.0, 55.0))]
    assert np.abs(img[30, 70] - [19, 51, 128]).max() <= 1  # the XYWH box's right edge, x = 20 + 50
    assert img[30, 75].tolist() == [0, 0, 0]


def test_bad_inputs_are_named():
    with pytest.raises(KeyError, match=r"Annotation 0 of image 7 has no 'bbox_mode'"):
        Visualizer(_black()).draw_dataset_dict({"image_id": 7, "annotations": [{"bbox": [0, 0, 1, 1],
                                                                                 "category_id": 0}]})
    with pytest.raises(ValueError, match=r"expects an \(H, W, 3\) RGB image; got shape \(8, 8\)"):
        Visualizer(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="overlay_instances got 1 boxes but 2 labels"):
        Visualizer(_black()).overlay_instances(boxes=np.array([[0, 0, 5, 5]]), labels=["a", "b"])
