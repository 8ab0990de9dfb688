"""End-to-end tests of tools/train_net.py: outputs, COCO table, --eval-only, SIGKILL + --resume."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import torch

from tools_testing import REPO, run_tool, tool_env, write_tiny_config


def _copypaste(stdout):
    """The (header, values) pairs of the "copypaste:" lines."""
    lines = re.findall(r"copypaste: (.*)", stdout)
    return [(lines[i], lines[i + 1]) for i in range(len(lines)) if lines[i].startswith("AP,")]


def _tail(path, chars=4000):
    return path.read_text(errors="replace")[-chars:]


def test_train_outputs_and_coco_table(trained_run):
    cfg, out, stdout = trained_run
    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == ["model_0000009.pth", "model_0000019.pth",
                                                                       "model_final.pth"]
    log = (out / "log.txt").read_text()
    first = log.splitlines()[:20]
    assert "Environment info:" in first[0]
    for key in ("Python", "PyTorch", "torchvision", "CPU", "GPU available"):
        assert any(line.startswith(key) for line in first), key
    metrics = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [4, 9, 14, 19]
    assert metrics[-1]["iteration"] == 20 and "bbox/AP" in metrics[-1]
    # The COCO table and the per-dataset csv block were printed.
    assert "Evaluation results for bbox:" in stdout and "| AP " in stdout
    assert "Evaluation results for shapes_tools_val in csv format:" in stdout
    assert len(_copypaste(stdout)) == 1  # one block per evaluation of the one test set, not one per printer
    header, values = _copypaste(stdout)[-1]
    assert header.startswith("AP,AP50,AP75")
    assert float(values.split(",")[0]) == round(metrics[-1]["bbox/AP"], 4)


def test_eval_only_reproduces_final_ap_and_config_reloads(trained_run, tmp_path):
    cfg, out, stdout = trained_run
    # config.yaml is the fully resolved config and is accepted by --config again.
    proc = run_tool("train_net.py", "--config", out / "config.yaml", "--eval-only",
                    "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path)
    assert not (tmp_path / "model_final.pth").exists() and "Starting training" not in proc.stdout
    assert _copypaste(proc.stdout)[-1] == _copypaste(stdout)[-1]
    name = os.path.join("inference", "shapes_tools_val", "coco_instances_results.json")
    assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_sigkill_then_resume_to_completion(tmp_path):
    out = tmp_path / "out"
    cfg = write_tiny_config(str(tmp_path), str(out), max_iter=24, checkpoint_period=2)
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config", cfg, "DATASETS.TEST", "()"]
    log = tmp_path / "killed_run.log"
    last = out / "last_checkpoint"
    deadline = time.monotonic() + 180
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=tool_env())
        try:
            while not (last.exists() and last.read_text().startswith("model_0")):
                assert proc.poll() is None, f"training ended before a checkpoint appeared:\n{_tail(log)}"
                assert time.monotonic() < deadline, f"no checkpoint within 180 s:\n{_tail(log)}"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model_final.pth").exists()
    named = last.read_text()
    # The checkpoint named by last_checkpoint is complete (atomic writes), whatever moment the kill hit.
    saved = torch.load(out / named, weights_only=True)
    resumed_at = saved["iteration"] + 1
    assert 0 < resumed_at < 24
    done = run_tool("train_net.py", "--config", cfg, "--resume", "DATASETS.TEST", "()")
    assert f"Resuming at iteration {resumed_at} from" in done.stdout
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == 23 and final["trainer"]["train_loader"]["batches"] == 24
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
