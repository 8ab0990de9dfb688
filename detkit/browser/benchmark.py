"""How fast the browser answers on a large dataset: a generated shapes dataset with synthetic predictions,
the server in a thread, and every route timed over one keep-alive connection."""
import gc
import http.client
import logging
import statistics
import time
from typing import Dict, List, Sequence

import numpy as np

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.data.datasets import register_shapes
from detkit.data.datasets.coco import contiguous_to_dataset_ids

from .index import build_index
from .server import make_server, serve_in_thread

__all__ = ["synthetic_predictions", "time_routes", "benchmark_browser"]

logger = logging.getLogger(__name__)


def synthetic_predictions(dataset_name: str, per_image: int = 20, seed: int = 0) -> List[Dict]:
    """Detector-like COCO results for a registered dataset: per image, a jittered copy of most boxes (some with
    the wrong class), the rest of ``per_image`` random low-scoring boxes.

    Returns:
        COCO results (image ids as the dataset's, its category ids, XYWH boxes).
    """
    rng = np.random.default_rng(seed)
    to_dataset_id = contiguous_to_dataset_ids(dataset_name)
    num_classes = len(to_dataset_id)
    results = []
    for record in DatasetCatalog.get(dataset_name):
        w, h = record["width"], record["height"]
        boxes, classes, scores = [], [], []
        for ann in record.get("annotations", []):
            if rng.random() < 0.85:
                x0, y0, x1, y1 = ann["bbox"]  # XYXY_ABS (the shapes loader's mode)
                size = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
                boxes.append(np.array([x0, y0, x1, y1]) + rng.normal(0, 0.08, 4) * size)
                wrong = rng.random() < 0.1
                classes.append(int(rng.integers(num_classes)) if wrong else ann["category_id"])
                scores.append(rng.uniform(0.3, 1.0))
        for _ in range(max(0, per_image - len(boxes))):
            x0, y0 = rng.uniform(0, w * 0.9), rng.uniform(0, h * 0.9)
            boxes.append(np.array([x0, y0, x0 + rng.uniform(4, w / 3), y0 + rng.uniform(4, h / 3)]))
            classes.append(int(rng.integers(num_classes)))
            scores.append(rng.uniform(0.05, 0.5))
        for (x0, y0, x1, y1), c, s in zip(boxes, classes, scores):
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            results.append({"image_id": record["image_id"], "category_id": to_dataset_id[c],
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(s)})
    return results


def time_routes(host: str, port: int, routes: Dict[str, Sequence[str]]) -> Dict[str, Dict[str, float]]:
    """Request every path of every route once, in order, over one keep-alive connection.

    Returns:
        per route: ``{"n", "median_ms", "p95_ms", "max_ms"}``.
    """
    conn = http.client.HTTPConnection(host, port, timeout=60)
    out = {}
    try:
        for name, paths in routes.items():
            times = []
            for path in paths:
                tic = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                times.append((time.perf_counter() - tic) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
            times.sort()
            out[name] = {"n": len(times), "median_ms": statistics.median(times),
                         "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))], "max_ms": times[-1]}
    finally:
        conn.close()
    return out


def benchmark_browser(num_images: int = 5000, image_size: int = 128, per_image: int = 20, requests: int = 40,
                      root: str = None, seed: int = 0) -> Dict:
    """Generate (once) a shapes dataset of ``num_images``, index it with synthetic predictions, and time each route.

    Args:
        num_images, image_size: the generated dataset (kept under ``root``/shapes, default $DETKIT_DATASETS).
        per_image: predictions per image.
        requests: requests per route.
        root: datasets root.
        seed: of the queries and predictions.

    Returns:
        ``{"num_images", "num_boxes", "num_predictions", "generate_s", "startup_s", "routes": {...}}``.
    """
    name = f"browser_bench_{num_images}_{image_size}"
    register_shapes(name, num_images, image_size, seed=97, root=root)
    tic = time.perf_counter()
    DatasetCatalog.get(name)  # generates the images on the first call
    generate_s = time.perf_counter() - tic
    index = build_index(name, synthetic_predictions(name, per_image, seed), default_score=0.25)
    gc.collect()  # as tools/browse.py does before serving
    gc.freeze()
    server = make_server(index, "127.0.0.1", 0)
    thread = serve_in_thread(server)
    rng = np.random.default_rng(seed)
    n = index.num_images
    num_classes = len(MetadataCatalog.get(name).thing_classes)
    pages = max(1, n // 48)

    def listing(k: int) -> str:
        sort = ("index", "fp", "missed")[k % 3]
        query = f"/api/images?page={int(rng.integers(1, pages + 1))}&per_page=48&sort={sort}&score={rng.uniform():.2f}"
        if k % 2:
            query += "&errors_only=1"
        if k % 4 == 1:
            query += f"&classes={int(rng.integers(num_classes))}"
        return query

    indices = rng.choice(n, size=requests, replace=False).tolist()
    routes = {
        "/api/summary": ["/api/summary"] * requests,
        "/api/images (page of 48, filters and sorts varied)": [listing(k) for k in range(requests)],
        "/api/images/<index>": [f"/api/images/{i}?score={rng.uniform():.2f}" for i in indices],
        "/thumb/<index> (made)": [f"/thumb/{i}" for i in indices],
        "/thumb/<index> (cached)": [f"/thumb/{i}" for i in indices],
        "/img/<index>": [f"/img/{i}" for i in indices],
    }
    try:
        timings = time_routes("127.0.0.1", server.server_address[1], routes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    return {"num_images": n, "num_boxes": int(len(index.gt_boxes)), "num_predictions": int(len(index.pred_scores)),
            "generate_s": generate_s, "startup_s": index.build_seconds, "routes": timings}
