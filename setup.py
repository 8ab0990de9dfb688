"""detkit: a registry-based object detection toolkit (FCOS and Faster R-CNN) on torch."""
from setuptools import find_packages, setup

setup(
    name="detkit",
    version="0.1.0",
    description="Registry-based object detection toolkit: FCOS and Faster R-CNN assembled from YAML.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["detkit", "detkit.*"]),
    install_requires=[
        "torch>=2.1,<3",
        "torchvision>=0.16,<1",
        "fvcore>=0.1.5,<0.2",
        "iopath>=0.1.9,<0.2",
        "pycocotools>=2.0.6,<3",
        "tabulate>=0.8",
        "termcolor>=1.1",
        "pyyaml>=5.1",
        "pillow>=9.0",
        "numpy>=1.22",
        "tqdm>=4.29",
    ],
    extras_require={
        "dev": ["pytest>=7.3", "faster-coco-eval>=1.5"],
        "faster": ["faster-coco-eval>=1.5"],
        "tensorboard": ["tensorboard>=2.10"],
    },
    entry_points={"detkit.plugins": []},
)
