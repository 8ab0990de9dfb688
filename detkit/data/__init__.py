"""Data: dataset catalogs, loaders for COCO / Pascal VOC / builtin shapes, transforms, mapper, loaders."""
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
