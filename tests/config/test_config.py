"""Config: defaults, _BASE_ chains, overrides, precise errors, safe YAML, dump round-trip."""

import pytest

from detkit.config import ConfigError, configurable, get_cfg


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_get_cfg_returns_independent_copies():
    a, b = get_cfg(), get_cfg()
    a.SOLVER.BASE_LR = 123.0
    assert b.SOLVER.BASE_LR == 0.01
    assert a.MODEL.BACKBONE.NAME == "RegNetX400MF"


def test_every_default_key_has_a_comment():
    import inspect

    from detkit.config import defaults

    lines = inspect.getsource(defaults).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("_C.") and "= CN()" not in line:
            assert lines[i - 1].lstrip().startswith("#"), f"no comment above: {line}"


def test_base_chain_relative_paths_any_depth(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "root.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n")
    _write(tmp_path / "sub" / "mid.yaml", "_BASE_: ../root.yaml\nSOLVER:\n  MAX_ITER: 8\n")
    other = _write(tmp_path / "other.yaml", "OUTPUT_DIR: out_other\n")
    leaf = _write(tmp_path / "sub" / "leaf.yaml", f"_BASE_: [mid.yaml, {other}]\nSOLVER:\n  IMS_PER_BATCH: 3\n")
    cfg = get_cfg()
    cfg.merge_from_file(leaf)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH) == (0.5, 8, 3)
    assert cfg.OUTPUT_DIR == "out_other"


def test_base_cycle_is_detected(tmp_path):
    _write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"Cycle in _BASE_ chain: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))


def test_unknown_key_in_file_names_key_file_and_closest(tmp_path):
    base = _write(tmp_path / "base.yaml", "MODEL:\n  FPN:\n    OUT_CHANELS: 64\n")
    leaf = _write(tmp_path / "leaf.yaml", "_BASE_: base.yaml\n")
    with pytest.raises(KeyError) as e:
        get_cfg().merge_from_file(leaf)
    msg = str(e.value)
    assert "Unknown config key 'MODEL.FPN.OUT_CHANELS'" in msg
    assert base in msg  # the file the key actually came from
    assert "Did you mean 'MODEL.FPN.OUT_CHANNELS'" in msg


def test_merge_from_list_and_its_errors():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.02", "INPUT.MIN_SIZE_TRAIN", "(320, 352)", "SOLVER.MAX_ITER", "5"])
    assert cfg.SOLVER.BASE_LR == 0.02 and cfg.INPUT.MIN_SIZE_TRAIN == (320, 352) and cfg.SOLVER.MAX_ITER == 5
    cfg.merge_from_list(["SOLVER.BASE_LR", "1"])  # an int is accepted for a float key
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        cfg.merge_from_list(["SOLVER.BASE_LR"])
    with pytest.raises(KeyError, match=r"'SOLVER.BASE_RL' \(from the command-line overrides\).*'SOLVER.BASE_LR'"):
        cfg.merge_from_list(["SOLVER.BASE_RL", "0.1"])


def test_type_mismatch_names_key_and_both_types(tmp_path):
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "'many'"])
    msg = str(e.value)
    assert "'SOLVER.MAX_ITER'" in msg and "int" in msg and "str" in msg
    path = _write(tmp_path / "t.yaml", "MODEL:\n  FPN: 3\n")
    with pytest.raises(ConfigError, match="'MODEL.FPN'.*group of keys"):
        get_cfg().merge_from_file(path)


def test_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path / "evil.yaml",
                  f"OUTPUT_DIR: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml uses a YAML tag that safe loading refuses"):
        get_cfg().merge_from_file(path)
    assert not marker.exists()


def test_dump_round_trips(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.MIN_SIZE_TRAIN", "(256, 288)", "SOLVER.STEPS", "(10, 20)", "SOLVER.WEIGHT_DECAY_BIAS", "0.0"])
    path = _write(tmp_path / "dumped.yaml", cfg.dump())
    again = get_cfg()
    again.merge_from_file(path)
    assert again == cfg


class _Part:
    @configurable
    def __init__(self, channels, scale=1.0, name="part"):
        self.channels, self.scale, self.name = channels, scale, name

    @classmethod
    def from_config(cls, cfg, scale=2.0):
        return {"channels": cfg.MODEL.FPN.OUT_CHANNELS, "scale": scale}


def test_configurable_plain_args_and_from_config():
    p = _Part(7, scale=3.0)
    assert (p.channels, p.scale, p.name) == (7, 3.0, "part")
    cfg = get_cfg()
    q = _Part(cfg)
    assert (q.channels, q.scale) == (128, 2.0)
    r = _Part(cfg, scale=5.0, name="x")  # from_config takes scale; name goes straight to __init__
    assert (r.channels, r.scale, r.name) == (128, 5.0, "x")
    s = _Part(cfg=cfg)
    assert s.channels == 128


def test_configurable_needs_from_config():
    class NoFromConfig:
        @configurable
        def __init__(self, a=1):
            self.a = a

    with pytest.raises(TypeError, match="has no classmethod from_config"):
        NoFromConfig(get_cfg())
    assert NoFromConfig(a=3).a == 3  # plain keyword construction still works without from_config


def test_detectron2_style_tuple_strings_in_yaml(tmp_path):
    path = _write(tmp_path / "d2.yaml", 'INPUT:\n  MIN_SIZE_TRAIN: (640, 672)\nDATASETS:\n  TRAIN: ("coco_2017_train",)\n'
                  'OUTPUT_DIR: "123"\n')
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640, 672)
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",)
    assert cfg.OUTPUT_DIR == "123"  # string keys stay strings


def test_detectron2_version_key_is_accepted_and_other_unknown_keys_still_refused(tmp_path):
    ok = _write(tmp_path / "d2.yaml", "VERSION: 2\nSOLVER:\n  BASE_LR: 0.04\n")
    cfg = get_cfg()
    cfg.merge_from_file(ok)
    assert cfg.VERSION == 2 and cfg.SOLVER.BASE_LR == 0.04
    assert "VERSION: 2" in cfg.dump().splitlines()
    old = _write(tmp_path / "v1.yaml", "VERSION: 1\n")
    with pytest.raises(ConfigError, match=r"'VERSION' is 1 \(from .*v1\.yaml\); detkit reads detectron2's "
                                          r"version-2 configs only"):
        get_cfg().merge_from_file(old)
    with pytest.raises(ConfigError, match=r"'VERSION' is 3 \(from the command-line overrides\)"):
        get_cfg().merge_from_list(["VERSION", "3"])
    bad = _write(tmp_path / "d2_bad.yaml", "VERSION: 2\nMODEL:\n  MASK_ON: true\n")
    with pytest.raises(KeyError, match=r"Unknown config key 'MODEL.MASK_ON' \(from .*d2_bad\.yaml\)"):
        get_cfg().merge_from_file(bad)


def test_set_new_allowed_lets_merges_add_keys_as_in_yacs(tmp_path):
    first = _write(tmp_path / "new.yaml", "MODEL:\n  MY_HEAD:\n    DEPTH: 3\n    SIZES: '(8, 16)'\n  MY_FLAG: on\n"
                                          "MY_TOP: abc\nSOLVER:\n  BASE_LR: 0.5\n")
    with pytest.raises(KeyError, match=r"Unknown config key 'MODEL.MY_HEAD'"):
        get_cfg().merge_from_file(first)  # refused by default
    cfg = get_cfg()
    cfg.set_new_allowed(True)
    assert cfg.is_new_allowed() and cfg.MODEL.FPN.is_new_allowed()  # recursively, as yacs does
    cfg.merge_from_file(first)
    assert cfg.MODEL.MY_HEAD.DEPTH == 3 and cfg.MODEL.MY_HEAD.SIZES == (8, 16)  # strings decoded as yacs does
    assert cfg.MODEL.MY_FLAG is True and cfg.MY_TOP == "abc" and cfg.SOLVER.BASE_LR == 0.5
    cfg.merge_from_file(_write(tmp_path / "more.yaml", "MODEL:\n  MY_HEAD:\n    WIDTH: 4\n"))  # an added group grows
    assert (cfg.MODEL.MY_HEAD.DEPTH, cfg.MODEL.MY_HEAD.WIDTH) == (3, 4)
    with pytest.raises(ConfigError, match="Type mismatch for config key 'MODEL.MY_HEAD.DEPTH'"):
        cfg.merge_from_file(_write(tmp_path / "typed.yaml", "MODEL:\n  MY_HEAD:\n    DEPTH: deep\n"))
    with pytest.raises(KeyError, match=r"Unknown config key 'MODEL.OTHER' \(from the command-line overrides\)"):
        cfg.merge_from_list(["MODEL.OTHER", "1"])  # yacs's merge_from_list never adds keys
    cfg.freeze()
    assert cfg.MODEL.MY_HEAD.is_frozen()
