"""ONNX Runtime against eager detkit for FCOS, RetinaNet and Faster R-CNN, each briefly trained on shapes.

Each meta-arch (RegNetX-400MF + a 32-channel FPN, as the quick-start configs but small) is trained
for a few iterations on 8 shapes_train images shrunk to 96 px, exported with ``export_model`` and
run on the first 20 shapes_val images through ``ONNXPredictor`` and ``DefaultPredictor`` (float32):
the same detections (class, box within 1e-2 px, score within 1e-4), the same COCO AP, and an image
of a size and aspect the export never saw.

One allowance: when two overlapping boxes of a class score within float32 noise of each other
(an NMS near-tie), ONNX Runtime's differently rounded kernels may keep the other one; detections
above the tie must still all match, and at most 2 of the 20 images may meet one.
"""
import os

import numpy as np
import pytest
import torch
import yaml

from detkit.config import get_cfg
from detkit.data import DatasetCatalog, DatasetMapper, read_image
from detkit.data.datasets import SHAPES_TRAIN_SEED, SHAPES_VAL_SEED, register_shapes
from detkit.engine import DefaultPredictor
from detkit.evaluation import COCOEvaluator
from detkit.export import ONNXPredictor, export_model
from detkit.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN, VAL = "shapes_export_train", "shapes_export_val"
SIZE = 96
ITERS = 30

COMMON = [
    "MODEL.FPN.OUT_CHANNELS", "32", "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", f"('{VAL}',)",
    "INPUT.MIN_SIZE_TRAIN", f"({SIZE},)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", str(SIZE),
    "INPUT.MAX_SIZE_TEST", "128", "INPUT.RANDOM_FLIP", "none", "TEST.AMP.ENABLED", "False",
    "DATALOADER.NUM_WORKERS", "0",
]
ARCHS = {
    "fcos": ("Base-FCOS.yaml", ["MODEL.FCOS.NUM_CLASSES", "3", "MODEL.FCOS.NUM_CONVS", "1",
                                "MODEL.FCOS.SCORE_THRESH_TEST", "0.05"]),
    "retinanet": ("Base-RetinaNet.yaml", ["MODEL.RETINANET.NUM_CLASSES", "3", "MODEL.RETINANET.NUM_CONVS", "1"]),
    "faster_rcnn": ("Base-RCNN-FPN.yaml", [
        "MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[8, 12], [16, 24], [32, 48]]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
        "[[1.0]]", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "128", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "300", "MODEL.RPN.POST_NMS_TOPK_TEST", "100"]),
}


def _cfg(arch: str, weights: str = ""):
    base, overrides = ARCHS[arch]
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", base))
    cfg.merge_from_list(COMMON + overrides + ["MODEL.WEIGHTS", weights])
    return cfg


def _train(cfg, path: str) -> None:
    """A few AdamW steps on the training images, weights saved to ``path``."""
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    data = [DatasetMapper(cfg, is_train=True)(d) for d in DatasetCatalog.get(TRAIN)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for it in range(ITERS):
        losses = model([data[(4 * it + j) % len(data)] for j in range(4)])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    torch.save({"model": model.state_dict()}, path)


@pytest.fixture(scope="module", params=sorted(ARCHS))
def exported(request, tmp_path_factory):
    """(cfg, DefaultPredictor, ONNXPredictor, export folder) of one briefly trained meta-arch."""
    register_shapes(TRAIN, 8, 320, SHAPES_TRAIN_SEED)
    register_shapes(VAL, 20, 320, SHAPES_VAL_SEED)  # the first 20 images of shapes_val
    folder = tmp_path_factory.mktemp(request.param)
    weights = str(folder / "model.pth")
    _train(_cfg(request.param), weights)
    cfg = _cfg(request.param, weights)
    export_model(cfg, str(folder / "onnx"))
    return cfg, DefaultPredictor(cfg), ONNXPredictor(str(folder / "onnx" / "model.onnx"), num_threads=1), folder


def _matches(eager, onnx) -> torch.Tensor:
    """(E,) whether each eager detection has an ONNX one of its class, box within 1e-2 px, score within 1e-4."""
    if not len(eager) or not len(onnx):
        return torch.zeros(len(eager), dtype=torch.bool)
    box_err = (eager.pred_boxes.tensor[:, None, :] - onnx.pred_boxes.tensor[None, :, :]).abs().amax(-1)  # (E, O)
    score_err = (eager.scores[:, None] - onnx.scores[None, :]).abs()  # (E, O)
    same_class = eager.pred_classes[:, None] == onnx.pred_classes[None, :]
    return (same_class & (box_err <= 1e-2) & (score_err <= 1e-4)).any(dim=1)


def _near_tie(eager, onnx, i: int) -> bool:
    """Eager detection ``i`` is one of two overlapping boxes of its class whose scores differ by less
    than float32 noise: ONNX Runtime's kernels round differently, keep the other box of the pair
    (same class, score within 1e-4, another box), and NMS continues from there."""
    same = (onnx.pred_classes == eager.pred_classes[i]) & ((onnx.scores - eager.scores[i]).abs() <= 1e-4)
    return bool(same.any())


def _compare(eager, onnx, where: str) -> bool:
    """Assert ONNX's detections equal eager's; returns whether an NMS near-tie was met.

    Greedy NMS decides in score order, so detections scoring above a near-tie must all match and
    only those at or below it may differ (what the tie's winner suppresses changes); without a
    tie the counts are equal and every eager detection has its ONNX match.
    """
    matched = _matches(eager, onnx)
    if bool(matched.all()):
        assert len(onnx) == len(eager), f"{where}: {len(onnx)} ONNX detections, {len(eager)} eager"
        return False
    first = int((~matched).nonzero()[0])  # detections are sorted by decreasing score
    assert _near_tie(eager, onnx, first), (
        f"{where}: eager detection {first} (class {int(eager.pred_classes[first])}, score "
        f"{float(eager.scores[first]):.6f}) has no ONNX match and no near-tie explains it")
    return True


def test_onnx_matches_eager_on_20_shapes_val_images(exported):
    cfg, eager, onnx, _ = exported
    evaluators = {name: COCOEvaluator(VAL, output_dir=None, distributed=False) for name in ("eager", "onnx")}
    total = ties = 0
    for d in DatasetCatalog.get(VAL):
        image = read_image(d["file_name"], format=cfg.INPUT.FORMAT)
        outputs = {"eager": eager(image), "onnx": onnx(image)}
        assert outputs["onnx"]["instances"].image_size == (320, 320)
        ties += _compare(outputs["eager"]["instances"], outputs["onnx"]["instances"], d["file_name"])
        total += len(outputs["eager"]["instances"])
        for name, evaluator in evaluators.items():
            evaluator.process([d], [outputs[name]])
    assert total > 0, "the briefly trained model detects nothing: the comparison would be empty"
    assert ties <= 2, f"{ties} of 20 images met an NMS near-tie: more than float32 noise explains"
    ap = {name: e.evaluate()["bbox"]["AP"] for name, e in evaluators.items()}
    assert abs(ap["eager"] - ap["onnx"]) <= 0.1, ap


def test_unseen_image_size_runs_and_matches(exported):
    """A 150 x 230 image (resized to 96 x 147) against an export traced at 96 x 128."""
    cfg, eager, onnx, _ = exported
    rng = np.random.default_rng(0)
    image = read_image(DatasetCatalog.get(VAL)[0]["file_name"], format=cfg.INPUT.FORMAT)
    canvas = rng.integers(0, 256, (150, 230, 3), dtype=np.uint8)
    canvas[:150, :150] = image[::2, ::2][:150, :150]
    result = onnx(canvas)["instances"]
    assert result.image_size == (150, 230)
    _compare(eager(canvas)["instances"], result, "150x230 image")


def test_model_yaml_holds_config_and_class_names(exported):
    cfg, _, onnx, folder = exported
    with open(folder / "onnx" / "model.yaml") as f:
        meta = yaml.safe_load(f)
    assert meta["class_names"] == ["square", "circle", "triangle"]
    assert meta["config"]["MODEL"]["META_ARCHITECTURE"] == cfg.MODEL.META_ARCHITECTURE
    assert meta["config"]["INPUT"]["MIN_SIZE_TEST"] == SIZE
    assert onnx.class_names == ["square", "circle", "triangle"]
    assert [i.name for i in onnx.session.get_inputs()] == ["image"]
    assert [o.name for o in onnx.session.get_outputs()] == ["boxes", "scores", "classes"]


def test_int8_copy_quantizes_every_conv_and_keeps_the_detections(exported, tmp_path):
    """quantize_onnx on 8 training images: every Conv reads int8 weights, ONNXPredictor runs the copy, and
    the float32 model's top 3 detections per image are found again among the int8 copy's top 5 (same
    class, IoU >= 0.5) in at least 85% of cases. The briefly trained models score about 0.1, so
    near-equal candidates may swap places; a broken scale or zero point loses far more."""
    import onnx
    from torchvision.ops import box_iou

    from detkit.export import quantize_onnx

    cfg, _, fp32, folder = exported
    calibration = [read_image(d["file_name"], format=cfg.INPUT.FORMAT) for d in DatasetCatalog.get(TRAIN)]
    path = quantize_onnx(str(folder / "onnx" / "model.onnx"), str(tmp_path / "int8"), calibration)
    graph = onnx.load(path).graph
    producers = {out: node for node in graph.node for out in node.output}
    int8_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(producers[n.input[1]].op_type == "DequantizeLinear"
                         and producers[n.input[1]].input[0] in int8_weights for n in convs)
    int8 = ONNXPredictor(path, num_threads=1)
    assert (fp32.precision, int8.precision) == ("fp32", "int8")

    top = found = 0
    for d in DatasetCatalog.get(VAL):
        image = read_image(d["file_name"], format=cfg.INPUT.FORMAT)
        a, b = fp32(image)["instances"][:3], int8(image)["instances"][:5]
        top += len(a)
        if len(a) and len(b):
            iou = box_iou(a.pred_boxes.tensor, b.pred_boxes.tensor)  # (A, B)
            same = a.pred_classes[:, None] == b.pred_classes[None, :]
            found += int(((iou >= 0.5) & same).any(dim=1).sum())
    assert top >= 30, f"only {top} float32 detections on 20 images: the comparison would be empty"
    assert found >= 0.85 * top, f"int8 found {found} of float32's {top} top detections"
    with pytest.raises(ValueError, match="already int8"):
        quantize_onnx(path, str(tmp_path / "again"), calibration)
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_onnx(str(folder / "onnx" / "model.onnx"), str(tmp_path / "none"), [])
