"""detkit: a registry-based object detection toolkit (FCOS and Faster R-CNN) on torch."""
__version__ = "0.1.0"
