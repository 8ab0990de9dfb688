"""The local results browser: a dataset and a model's predictions in a web page.

``build_index`` reads a dataset and a COCO results file, scores it (COCOeval) and matches its
predictions once (the reports' matching: TP / FP with TIDE categories / missed, IoU 0.5);
``make_server`` serves the page (plain HTML/JS/CSS shipped in this package), a read-only JSON API and
image bytes by dataset index. ``tools/browse.py`` starts it from a finished run's OUTPUT_DIR.
"""
from .index import BrowserIndex, build_index
from .launch import add_browser_arguments, browse, index_from_args, split_output_dir
from .queries import QueryError, image_detail, list_images, summary
from .server import BrowserServer, make_server, serve_in_thread

__all__ = ["BrowserIndex", "build_index", "BrowserServer", "make_server", "serve_in_thread", "browse",
           "index_from_args", "add_browser_arguments", "split_output_dir", "summary", "list_images", "image_detail",
           "QueryError"]
