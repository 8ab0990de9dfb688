"""Helpers for tests that run tools or need a tiny trained config (a module: test modules cannot import conftest)."""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PLUGIN = textwrap.dedent('''
    """Registers small shapes subsets for the tools tests."""
    from detkit.data.datasets import register_shapes

    register_shapes("shapes_tools_train", 16, 64, 21)
    register_shapes("shapes_tools_val", 4, 64, 22)
''')


def write_tiny_config(folder, output_dir, max_iter=20, checkpoint_period=10) -> str:
    """A config (plus the plugin it names) for FCOS on 16 + 4 shapes images of 64 px."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "plugin_shapes.py"), "w") as f:
        f.write(PLUGIN)
    path = os.path.join(folder, "tiny.yaml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(f'''
            _BASE_: {os.path.join(REPO, "configs", "Base-FCOS.yaml")}
            PLUGINS: ["plugin_shapes.py"]
            MODEL:
              FPN: {{OUT_CHANNELS: 32}}
              FCOS: {{NUM_CLASSES: 3, NUM_CONVS: 1, SCORE_THRESH_TEST: 0.05}}
            DATASETS: {{TRAIN: ["shapes_tools_train"], TEST: ["shapes_tools_val"]}}
            INPUT: {{MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 64, MIN_SIZE_TEST: 64, MAX_SIZE_TEST: 64}}
            DATALOADER: {{NUM_WORKERS: 0}}
            SOLVER: {{OPTIMIZER: AdamW, IMS_PER_BATCH: 4, BASE_LR: 0.002, MAX_ITER: {max_iter}, WARMUP_ITERS: 5,
                      STEPS: [15], CHECKPOINT_PERIOD: {checkpoint_period}}}
            LOG_PERIOD: 5
            SEED: 3
            OUTPUT_DIR: {output_dir}
        '''))
    return path


def tool_env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # on a loaded 2-core machine, 2 threads per process is several times slower
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_tool(script, *args, timeout=240):
    """Run ``tools/<script>`` with ``args``; returns the CompletedProcess (stdout and stderr merged)."""
    cmd = [sys.executable, os.path.join(REPO, "tools", script), *[str(a) for a in args]]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env=tool_env())
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    return proc
