"""Learning test: Faster R-CNN (configs/Base-RCNN-FPN.yaml, from scratch) overfits 4 shapes_train images.

Trained and scored with the config's speed settings: channels_last, and bf16 autocast where the CPU
has native bf16 (AVX512-BF16 or AMX); elsewhere autocast is off and training and scoring run float32,
as the engine does there (``detkit.utils.env.autocast_dtype``). Scored
with COCOEvaluator on those same images: AP50 >= 90 (x100 scale), with box refinement on and off
(the seed's simplified variant). Images are shrunk to 160 px (anchors scaled to match) and
the second stage is narrowed (256-wide FCs, 64 RoIs per image) to keep 100 iterations cheap on 2 CPU cores.
"""
import math
import os

import pytest
import torch

from detkit.config import get_cfg
from detkit.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detkit.data.datasets import SHAPES_TRAIN_SEED, register_shapes
from detkit.evaluation import COCOEvaluator, inference_on_dataset
from detkit.modeling import build_model
from detkit.utils.env import cpu_has_native_bf16

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-RCNN-FPN.yaml")
DATASET = "shapes_train_4"  # the first 4 images of shapes_train
SIZE = 160
ITERS = 100  # seed 0: AP50 ~90 after 60 iterations (both variants), so 100 leaves a margin
LR = 2e-3


def _cfg(bbox_reg: bool):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([
        "MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.ROI_HEADS.BBOX_REG", str(bbox_reg),
        # 320 px shapes shrunk to 160 px: objects of 6-80 px, so anchors of 16-96 px, square.
        "INPUT.MIN_SIZE_TRAIN", f"({SIZE},)", "INPUT.MAX_SIZE_TRAIN", str(SIZE),
        "INPUT.MIN_SIZE_TEST", str(SIZE), "INPUT.MAX_SIZE_TEST", str(SIZE), "INPUT.RANDOM_FLIP", "none",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 24], [32, 48], [64, 96]]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]",
        # A narrow, cheap second stage.
        "MODEL.ROI_BOX_HEAD.FC_DIM", "256", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "128",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "MODEL.RPN.PRE_NMS_TOPK_TEST", "300",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "DATALOADER.NUM_WORKERS", "0",
    ])
    return cfg


@pytest.mark.parametrize("bbox_reg", [True, False], ids=["refinement", "no_refinement"])
def test_faster_rcnn_overfits_four_shapes_images(bbox_reg):
    register_shapes(DATASET, 4, 320, SHAPES_TRAIN_SEED)
    cfg = _cfg(bbox_reg)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = [DatasetMapper(cfg, is_train=True)(d) for d in DatasetCatalog.get(DATASET)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    model.train()
    # The config's training precision, as the engine runs it (SOLVER.AMP: bf16 on a CPU that has it).
    amp = cfg.SOLVER.AMP.ENABLED and cpu_has_native_bf16()
    for it in range(ITERS):
        for group in optimizer.param_groups:  # 10 iterations of linear warmup, then cosine decay to 0
            group["lr"] = LR * min(1.0, (it + 1) / 10) * 0.5 * (1 + math.cos(math.pi * it / ITERS))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            losses = model(batch)
        optimizer.zero_grad()
        sum(v.float() for v in losses.values()).backward()
        optimizer.step()
    assert ("loss_box_reg" in losses) == bbox_reg

    results = inference_on_dataset(model, build_detection_test_loader(cfg, DATASET),
                                   COCOEvaluator(DATASET, output_dir=None))
    assert results["bbox"]["AP50"] >= 90.0, results["bbox"]
