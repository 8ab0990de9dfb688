"""Every config key detkit knows, with its default and a one-line meaning.

Key names, types and meanings follow detectron2 wherever detectron2 has the same key.
Plugins add their own keys through an ``add_config(cfg)`` hook.
"""
from .config import CfgNode as CN

_C = CN()

# Config format version, detectron2's bookkeeping key (its files say VERSION: 2); only 2 is accepted.
_C.VERSION = 2

# Components loaded before a config file is merged (module names or .py paths).
_C.PLUGINS = []

# ---------------------------------------------------------------------------- model
_C.MODEL = CN()
# Name in META_ARCH_REGISTRY: "FCOS", "RetinaNet", "GeneralizedRCNN" or "ProposalNetwork".
_C.MODEL.META_ARCHITECTURE = "FCOS"
# Device to train / run on: "cpu", "cuda", "cuda:1", ...
_C.MODEL.DEVICE = "cpu"
# Whole-model checkpoint (local path or URL) loaded by Trainer.resume_or_load / DefaultPredictor.
_C.MODEL.WEIGHTS = ""
# Per-channel mean subtracted from images, in INPUT.FORMAT order, 0-255 scale (ImageNet RGB).
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
# Per-channel std that images are divided by, in INPUT.FORMAT order (ImageNet RGB).
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]

_C.MODEL.BACKBONE = CN()
# Name in BACKBONE_REGISTRY: "RegNetX400MF" or "ResNet".
_C.MODEL.BACKBONE.NAME = "RegNetX400MF"
# Freeze the stem (1) and the first N-1 stages (N > 1); 0 trains everything.
_C.MODEL.BACKBONE.FREEZE_AT = 0
# Backbone normalisation: "BN", "FrozenBN", "GN" or "SyncBN".
_C.MODEL.BACKBONE.NORM = "BN"
# ImageNet weights: a torchvision weights name (e.g. "RegNet_X_400MF_Weights.IMAGENET1K_V2"), a path or a URL.
_C.MODEL.BACKBONE.WEIGHTS = ""

_C.MODEL.RESNETS = CN()
# ResNet depth for the "ResNet" backbone: 18, 34, 50 or 101.
_C.MODEL.RESNETS.DEPTH = 50

_C.MODEL.FPN = CN()
# Backbone features the FPN consumes, finest first.
_C.MODEL.FPN.IN_FEATURES = ["c3", "c4", "c5"]
# Channels of every FPN output.
_C.MODEL.FPN.OUT_CHANNELS = 128
# Normalisation in the FPN convs: "" (none), "GN", "BN", "FrozenBN".
_C.MODEL.FPN.NORM = ""
# Extra levels on top: "" (none), "P6P7_P5" (from p5) or "P6P7_C5" (from c5).
_C.MODEL.FPN.TOP_BLOCK = ""

_C.MODEL.ANCHOR_GENERATOR = CN()
# Name in ANCHOR_GENERATOR_REGISTRY used by the RPN and RetinaNet.
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
# Anchor sizes (sqrt of area, input pixels), one list per feature level.
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128]]
# Anchor aspect ratios (height / width), one list per level, or one list for all levels.
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
# Anchor centre offset within a cell, in units of the stride (0.0 or 0.5).
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

# ---------------------------------------------------------------------------- FCOS
_C.MODEL.FCOS = CN()
# Number of foreground classes.
_C.MODEL.FCOS.NUM_CLASSES = 80
# Feature levels the head runs on.
_C.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5"]
# Name in DENSE_HEAD_REGISTRY of the one-stage head.
_C.MODEL.FCOS.HEAD_NAME = "FCOSHead"
# Convs in each of the classification and box towers.
_C.MODEL.FCOS.NUM_CONVS = 4
# Normalisation in the towers: "GN" or "" (none).
_C.MODEL.FCOS.HEAD_NORM = "GN"
# Prior probability of foreground used to initialise the classification bias.
_C.MODEL.FCOS.PRIOR_PROB = 0.01
# Learn one scalar per level that multiplies the box regression.
_C.MODEL.FCOS.USE_SCALE = True
# Name in MATCHER_REGISTRY used to assign locations to boxes.
_C.MODEL.FCOS.MATCHER = "FCOSMatcher"
# Name in BOX_CODER_REGISTRY used to encode boxes as LTRB distances.
_C.MODEL.FCOS.BOX_CODER = "LTRBBoxCoder"
# Upper bounds of the max-LTRB size range of each level but the last (the last is unbounded).
_C.MODEL.FCOS.SIZES_OF_INTEREST = [64, 128]
# Centre-sampling radius in strides; 0 uses the whole box.
_C.MODEL.FCOS.CENTER_SAMPLING_RADIUS = 1.5
# Sigmoid focal loss alpha.
_C.MODEL.FCOS.FOCAL_LOSS_ALPHA = 0.25
# Sigmoid focal loss gamma.
_C.MODEL.FCOS.FOCAL_LOSS_GAMMA = 2.0
# Box loss: "giou" or "l1" (on stride-normalised LTRB).
_C.MODEL.FCOS.BOX_LOSS_TYPE = "giou"
# Momentum of the EMA of the positive count that normalises the losses.
_C.MODEL.FCOS.LOSS_NORMALIZER_MOMENTUM = 0.9
# Minimum score (sqrt(cls * centerness)) to keep a detection.
_C.MODEL.FCOS.SCORE_THRESH_TEST = 0.2
# Candidates kept per level before NMS.
_C.MODEL.FCOS.TOPK_CANDIDATES_TEST = 1000
# IoU threshold of the class-wise NMS.
_C.MODEL.FCOS.NMS_THRESH_TEST = 0.6

# ---------------------------------------------------------------------------- RetinaNet
_C.MODEL.RETINANET = CN()
# Number of foreground classes (sigmoid outputs, no background class).
_C.MODEL.RETINANET.NUM_CLASSES = 80
# Neck outputs the head runs on, finest first (one MODEL.ANCHOR_GENERATOR.SIZES list each).
_C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5"]
# Name in DENSE_HEAD_REGISTRY of the head.
_C.MODEL.RETINANET.HEAD_NAME = "RetinaNetHead"
# 3x3 convs in each of the classification and box subnets.
_C.MODEL.RETINANET.NUM_CONVS = 4
# Anchors with IoU < 0.4 are background, in [0.4, 0.5) ignored, >= 0.5 foreground (+ each gt's best anchors).
_C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
# Label of each IoU range: 0 background, -1 ignored, 1 foreground.
_C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]
# Initial foreground probability of every class logit.
_C.MODEL.RETINANET.PRIOR_PROB = 0.01
# Detections with a lower score are dropped before NMS.
_C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
# Candidates kept per level and image before NMS.
_C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
# IoU threshold of the class-wise NMS.
_C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5
# Weights (wx, wy, ww, wh) of the Box2BoxTransform anchor deltas.
_C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Focal loss gamma (focusing parameter).
_C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
# Focal loss alpha (weight of the foreground term).
_C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
# Smooth-L1 beta of the box loss on deltas; 0 gives L1.
_C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
# Box loss: "smooth_l1" (on deltas) or "giou" (on decoded boxes).
_C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"
# Normalisation in the subnets' convs: "" (none), "GN", "BN", ...
_C.MODEL.RETINANET.NORM = ""

# ---------------------------------------------------------------------------- two-stage
_C.MODEL.PROPOSAL_GENERATOR = CN()
# Name in PROPOSAL_GENERATOR_REGISTRY.
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
# Proposals with a side shorter than this (input pixels) are dropped.
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0

_C.MODEL.RPN = CN()
# Name in RPN_HEAD_REGISTRY of the RPN head.
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
# Feature levels the RPN runs on.
_C.MODEL.RPN.IN_FEATURES = ["p3", "p4", "p5"]
# Anchors reaching further than this outside the image are ignored in training; -1 keeps all.
_C.MODEL.RPN.BOUNDARY_THRESH = -1
# IoU thresholds splitting anchors into negative / ignored / positive.
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
# Labels of those ranges: 0 negative, -1 ignore, 1 positive.
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
# Anchors sampled per image for the RPN losses.
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
# Target fraction of positives among the sampled anchors.
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
# Box regression loss: "smooth_l1" / "l1" (on deltas) or "giou" (on decoded boxes).
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
# Weight of the box regression loss.
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
# Weights (wx, wy, ww, wh) of the anchor box deltas.
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# Smooth-L1 beta; 0 means L1.
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
# Weight of all RPN losses.
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# Top proposals kept per level before NMS, in training.
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
# Top proposals kept per level before NMS, at test time.
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
# Proposals kept per image after NMS, in training.
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 1000
# Proposals kept per image after NMS, at test time.
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
# IoU threshold of the proposal NMS.
_C.MODEL.RPN.NMS_THRESH = 0.7

_C.MODEL.ROI_HEADS = CN()
# Name in ROI_HEADS_REGISTRY.
_C.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
# Number of foreground classes of the two-stage models.
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
# Feature levels RoIs are pooled from.
_C.MODEL.ROI_HEADS.IN_FEATURES = ["p3", "p4", "p5"]
# IoU thresholds splitting proposals into background / foreground.
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
# Labels of those ranges: 0 background, 1 foreground.
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
# RoIs sampled per image for the box head losses.
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
# Target fraction of foreground among the sampled RoIs.
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
# Minimum softmax score to keep a detection.
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
# IoU threshold of the class-wise NMS.
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
# Append ground-truth boxes to the proposals in training.
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True
# Refine boxes in the second stage; False gives the seed's simplified variant.
_C.MODEL.ROI_HEADS.BBOX_REG = True

_C.MODEL.ROI_BOX_HEAD = CN()
# Name of the box head: "FastRCNNConvFCHead".
_C.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
# Box regression loss: "smooth_l1" / "l1" (on deltas) or "giou" (on decoded boxes).
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
# Weight of the box regression loss.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
# Weights (wx, wy, ww, wh) of the proposal box deltas.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Smooth-L1 beta; 0 means L1.
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
# Side of the pooled RoI feature.
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
# Sampling points per bin of RoIAlign; 0 adapts to the RoI size.
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
# "ROIAlign" (unaligned) or "ROIAlignV2" (aligned, half-pixel correct).
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
# "canonical" (box size picks the level) or "source" (the level that proposed the box).
_C.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT = "canonical"
# Convs in the box head before the FC layers.
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
# Channels of those convs.
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
# FC layers in the box head.
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 2
# Width of the FC layers.
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
# Normalisation in the box head convs: "" or "GN".
_C.MODEL.ROI_BOX_HEAD.NORM = ""
# Predict one box per RoI instead of one per class.
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False

# ---------------------------------------------------------------------------- input
_C.INPUT = CN()
# Shorter-side sizes for training; one is sampled per image ("choice") or a range ("range").
_C.INPUT.MIN_SIZE_TRAIN = (800,)
# How MIN_SIZE_TRAIN is sampled: "choice" or "range".
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
# Cap on the longer side in training.
_C.INPUT.MAX_SIZE_TRAIN = 1333
# Shorter-side size at test time; 0 disables resizing.
_C.INPUT.MIN_SIZE_TEST = 800
# Cap on the longer side at test time.
_C.INPUT.MAX_SIZE_TEST = 1333
# Channel order of images fed to the model: "RGB" or "BGR".
_C.INPUT.FORMAT = "RGB"
# Random flip in training: "horizontal", "vertical" or "none".
_C.INPUT.RANDOM_FLIP = "horizontal"
_C.INPUT.COLOR_JITTER = CN()
# Apply random brightness / contrast / saturation in training.
_C.INPUT.COLOR_JITTER.ENABLED = False
# Maximum relative brightness change.
_C.INPUT.COLOR_JITTER.BRIGHTNESS = 0.2
# Maximum relative contrast change.
_C.INPUT.COLOR_JITTER.CONTRAST = 0.2
# Maximum relative saturation change.
_C.INPUT.COLOR_JITTER.SATURATION = 0.2

# ---------------------------------------------------------------------------- data
_C.DATASETS = CN()
# Names in DatasetCatalog to train on.
_C.DATASETS.TRAIN = ()
# Names in DatasetCatalog to evaluate on.
_C.DATASETS.TEST = ()

_C.DATALOADER = CN()
# Worker processes per data loader.
_C.DATALOADER.NUM_WORKERS = 2
# Batch images of similar aspect ratio together.
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
# Training sampler: "TrainingSampler" or "RepeatFactorTrainingSampler" (repeats images of rare categories).
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
# RepeatFactorTrainingSampler: category frequency under which images are repeated (LVIS uses 0.001).
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
# RepeatFactorTrainingSampler: repeat factor sqrt(t / f) (True) or t / f (False).
_C.DATALOADER.REPEAT_SQRT = True
# Drop training images without annotations.
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True
# A training image that cannot be read: "raise" stops naming it; "skip" warns, counts it, uses the next.
_C.DATALOADER.ON_BAD_IMAGE = "raise"

# ---------------------------------------------------------------------------- solver
_C.SOLVER = CN()
# "SGD" or "AdamW".
_C.SOLVER.OPTIMIZER = "SGD"
# Total training iterations.
_C.SOLVER.MAX_ITER = 40000
# Base learning rate.
_C.SOLVER.BASE_LR = 0.01
# SGD momentum.
_C.SOLVER.MOMENTUM = 0.9
# Use Nesterov momentum with SGD.
_C.SOLVER.NESTEROV = False
# AdamW betas.
_C.SOLVER.BETAS = (0.9, 0.999)
# Weight decay of ordinary weights.
_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of normalisation-layer weights and biases.
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Weight decay of biases; None uses WEIGHT_DECAY.
_C.SOLVER.WEIGHT_DECAY_BIAS = None
# Learning-rate multiplier for biases.
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# "WarmupMultiStepLR" or "WarmupCosineLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
# Iterations at which the multistep schedule multiplies the LR by GAMMA.
_C.SOLVER.STEPS = (30000,)
# Multistep decay factor.
_C.SOLVER.GAMMA = 0.1
# Final LR of the cosine schedule.
_C.SOLVER.BASE_LR_END = 0.0
# Warmup starts at BASE_LR * WARMUP_FACTOR.
_C.SOLVER.WARMUP_FACTOR = 0.001
# Warmup length in iterations.
_C.SOLVER.WARMUP_ITERS = 1000
# "linear" or "constant".
_C.SOLVER.WARMUP_METHOD = "linear"
# Save a checkpoint every this many iterations.
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Periodic checkpoints kept on disk (older ones are deleted); 0 keeps all.
_C.SOLVER.CHECKPOINT_MAX_TO_KEEP = 3
# Images per batch, over all processes.
_C.SOLVER.IMS_PER_BATCH = 16
_C.SOLVER.CLIP_GRADIENTS = CN()
# Clip gradients before each step.
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "value" (clamp each element) or "norm" (scale the whole gradient).
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
# The value or norm to clip to.
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
# The p of the p-norm when CLIP_TYPE is "norm".
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
# Mixed precision training: fp16 + GradScaler on CUDA, bf16 autocast on a CPU with native bf16 (AVX512-BF16
# or AMX); float32 with a warning elsewhere. The Base configs turn it on.
_C.SOLVER.AMP.ENABLED = False

# ---------------------------------------------------------------------------- test
_C.TEST = CN()
# Evaluate every this many iterations during training; 0 only at the end.
_C.TEST.EVAL_PERIOD = 0
# Maximum detections per image.
_C.TEST.DETECTIONS_PER_IMAGE = 100
# COCO evaluation backend: "pycocotools" or "faster" (faster-coco-eval).
_C.TEST.COCO_EVAL_BACKEND = "pycocotools"
# Metric the best-checkpoint hook tracks, e.g. "bbox/AP50"; "" turns the hook off.
_C.TEST.BEST_CHECKPOINT_METRIC = ""
# Whether larger ("max") or smaller ("min") values of that metric are better.
_C.TEST.BEST_CHECKPOINT_MODE = "max"
# Draw OUTPUT_DIR/plots (losses, PR curves, confusion matrix, errors, predictions) after evaluating and training.
_C.TEST.PLOTS = True
# Score threshold of the confusion matrix, error counts and predictions grid in OUTPUT_DIR/plots.
_C.TEST.REPORT_CONF_THRESH = 0.25

# ---------------------------------------------------------------------------- misc
# Where checkpoints, logs, metrics and results are written.
_C.OUTPUT_DIR = "./output"
# Random seed; negative picks one from time and pid (logged).
_C.SEED = -1
# Iterations between console / metrics.json writes.
_C.LOG_PERIOD = 20
# Enable cudnn.benchmark.
_C.CUDNN_BENCHMARK = False

# ---------------------------------------------------------------------------- speed
# Run backbone and neck in channels_last memory format, with the input batch laid out NHWC (faster
# convs on CPU and on tensor cores). The heads keep their own layout: FCOSHead runs NCHW on CPU.
_C.MODEL.CHANNELS_LAST = False
_C.TEST.AMP = CN()
# Inference under autocast (as SOLVER.AMP) for backbone, neck and heads; post-processing stays fp32.
_C.TEST.AMP.ENABLED = False
_C.TEST.COMPILE = CN()
# Inference through torch.compile (inductor) with the weights frozen as constants: the backbone, the
# neck and a one-stage detector's head, in eval mode without autograd. The first call of each input
# size compiles (tens of seconds on a CPU); a weight change (a training step) compiles again. Off by
# default: see "CPUs without native bf16" in the README for when it pays.
_C.TEST.COMPILE.ENABLED = False
