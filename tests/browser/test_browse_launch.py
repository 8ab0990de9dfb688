"""Starting the browser from arguments: a finished run's OUTPUT_DIR (positional) or --dataset/--results;
and tools/browse.py end to end in its own process."""
import gc
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from browser_testdata import coco_results, write_toy_run

from detkit.browser import add_browser_arguments, browse, index_from_args, list_images, make_server, split_output_dir
from detkit.browser.queries import ImageQuery
from detkit.engine import config_argument_parser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(argv):
    parser = add_browser_arguments(config_argument_parser())
    return split_output_dir(parser, parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_toy_run(str(tmp_path_factory.mktemp("toy_run")))


def test_output_dir_is_the_first_word_and_flags_may_follow_it(run_dir):
    args = parse([run_dir, "--port", "0", "--host", "::1", "TEST.REPORT_CONF_THRESH", "0.6"])
    assert (args.output_dir, args.port, args.host) == (run_dir, 0, "::1")
    assert args.opts == ["TEST.REPORT_CONF_THRESH", "0.6"]
    args = parse(["--dataset", "x", "TEST.REPORT_CONF_THRESH", "0.6"])
    assert args.output_dir is None and args.dataset == "x" and args.opts == ["TEST.REPORT_CONF_THRESH", "0.6"]


def test_a_run_folder_gives_its_test_dataset_results_and_threshold(run_dir):
    index = index_from_args(parse([run_dir]))
    assert index.dataset_name == "browser_toy_run" and index.default_score == 0.4  # the run's REPORT_CONF_THRESH
    assert index.results_file == os.path.join(run_dir, "inference", "browser_toy_run", "coco_instances_results.json")
    # COCO category ids 1..3 map back to the contiguous classes: the same matching as the hand-made dataset
    counts = {im["index"]: im["counts"] for im in list_images(index, ImageQuery(score=0.25))["images"]}
    assert counts[0] == {"gt": 2, "pred": 6, "tp": 2, "fp": 4, "missed": 0}
    assert counts[4] == {"gt": 1, "pred": 1, "tp": 0, "fp": 0, "missed": 1}
    assert index_from_args(parse([run_dir, "--score", "0.7"])).default_score == 0.7


def test_dataset_and_results_flags(toy_dataset, tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps(coco_results()))
    index = index_from_args(parse(["--dataset", toy_dataset, "--results", results]))
    assert index.has_results and len(index.pred_scores) == 9 and index.default_score == 0.25
    assert not index_from_args(parse(["--dataset", toy_dataset])).has_results


def test_bad_arguments_are_named(run_dir, tmp_path):
    with pytest.raises(ValueError, match="a finished run's OUTPUT_DIR, or --dataset NAME"):
        index_from_args(parse([]))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/config.yaml does not exist"):
        index_from_args(parse([tmp_path]))
    with pytest.raises(ValueError, match=r"--dataset 'other' is not one of the DATASETS.TEST .*\['browser_toy_run'\]"):
        index_from_args(parse([run_dir, "--dataset", "other"]))
    missing = tmp_path / "run"
    write_toy_run(str(missing), dataset_name="browser_toy_missing")
    os.remove(missing / "inference" / "browser_toy_missing" / "coco_instances_results.json")
    with pytest.raises(FileNotFoundError, match="coco_instances_results.json does not exist. Evaluate the run"):
        index_from_args(parse([missing]))


def test_browse_tool_serves_a_run_folder(tmp_path):
    run = write_toy_run(str(tmp_path), dataset_name="browser_toy_tool")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # Ctrl-C as in a terminal: the tool starts with SIGINT's default action even when this run
    # inherited it ignored (a suite started in the background with `&` does), where Python would
    # never raise KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "browse.py"), run, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url, lines, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
                lines.append(line)
                if "Results browser for 'browser_toy_tool' at " in line:
                    url = line.rsplit(" at ", 1)[1].split()[0]
        assert url and url.startswith("http://127.0.0.1:"), "".join(lines)
        with urllib.request.urlopen(url + "api/summary", timeout=30) as response:
            summary = json.load(response)
        assert summary["dataset"] == "browser_toy_tool" and summary["default_score"] == 0.4
        assert summary["ap"]["per_class"]["bird"] == 0.0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
            pytest.fail("browse.py did not stop within 60 s of Ctrl-C; its output:\n" + "".join(lines) + out)
    assert proc.returncode == 0 and "Stopped." in out and "Traceback" not in out


def test_a_busy_port_is_named(run_dir, toy_index):
    taken = make_server(toy_index, "127.0.0.1", 0)
    try:
        port = taken.server_address[1]
        with pytest.raises(OSError, match=f"Cannot listen on 127.0.0.1:{port} .*pick another port with --port"):
            browse(parse([run_dir, "--port", port]))
    finally:
        taken.server_close()
        gc.unfreeze()  # browse() froze the test session's objects before it tried to listen
