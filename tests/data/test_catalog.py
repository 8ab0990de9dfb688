"""DatasetCatalog and MetadataCatalog: registration, lookup errors, metadata rules, lazy metadata."""
import pytest

from detkit.data import DatasetCatalog, Metadata, MetadataCatalog


def test_register_get_list_remove(unique_name):
    name = unique_name()
    DatasetCatalog.register(name, lambda: [{"file_name": "x.jpg"}])
    assert name in DatasetCatalog.list()
    assert DatasetCatalog.get(name) == [{"file_name": "x.jpg"}]
    DatasetCatalog.remove(name)
    assert name not in DatasetCatalog


def test_register_twice_is_an_error(unique_name):
    name = unique_name()
    DatasetCatalog.register(name, lambda: [])
    with pytest.raises(KeyError, match=f"'{name}' is already registered"):
        DatasetCatalog.register(name, lambda: [])


def test_register_needs_a_callable(unique_name):
    with pytest.raises(TypeError, match="needs a callable"):
        DatasetCatalog.register(unique_name(), [])


def test_unknown_name_suggests_closest():
    with pytest.raises(KeyError) as e:
        DatasetCatalog.get("shapes_trian")
    assert "'shapes_trian' is not registered" in str(e.value)
    assert "Did you mean 'shapes_train'" in str(e.value)


def test_remove_unknown_name():
    with pytest.raises(KeyError, match="'nope_xyz' is not registered"):
        DatasetCatalog.remove("nope_xyz")


def test_metadata_refuses_a_changed_value(unique_name):
    meta = MetadataCatalog.get(unique_name())
    meta.thing_classes = ["a", "b"]
    meta.thing_classes = ["a", "b"]  # the same value is fine
    with pytest.raises(AttributeError, match="already \\['a', 'b'\\]"):
        meta.thing_classes = ["b", "a"]


def test_metadata_missing_attribute_lists_existing(unique_name):
    name = unique_name()
    meta = MetadataCatalog.get(name).set(evaluator_type="coco")
    with pytest.raises(AttributeError, match=f"'{name}' has no attribute 'json_file'. It has: evaluator_type, name"):
        meta.json_file
    assert meta.get("json_file", "default") == "default"


def test_lazy_metadata_is_computed_once_on_first_read():
    calls = []
    meta = Metadata("lazy").set_lazy("thing_classes", lambda: calls.append(1) or ["x"])
    assert calls == []
    assert meta.get("thing_classes") == ["x"]
    assert meta.thing_classes == ["x"] and hasattr(meta, "thing_classes")
    assert calls == [1]
    assert meta.as_dict() == {"name": "lazy", "thing_classes": ["x"]}


def test_explicit_value_wins_over_lazy():
    meta = Metadata("m").set_lazy("json_file", lambda: pytest.fail("lazy value must not be computed"))
    meta.json_file = "a.json"
    assert meta.json_file == "a.json"
    meta2 = Metadata("m2", json_file="b.json").set_lazy("json_file", lambda: "other")
    assert meta2.json_file == "b.json"


def test_catalogs_speak_detectron2s_dict_api(unique_name):
    name = unique_name()
    func = lambda: [{"file_name": "y.jpg"}]  # noqa: E731
    DatasetCatalog.register(name, func)
    assert name in DatasetCatalog and DatasetCatalog[name] is func
    assert DatasetCatalog.get(name) == [{"file_name": "y.jpg"}]
    assert DatasetCatalog.pop(name) is func and name not in DatasetCatalog
    assert DatasetCatalog.pop(name, "gone") == "gone"
    with pytest.raises(KeyError, match=f"Dataset '{name}' is not registered"):
        DatasetCatalog.pop(name)
    # A duplicate registration is a KeyError (detkit) and an AssertionError (detectron2).
    DatasetCatalog.register(name, func)
    with pytest.raises(AssertionError, match="already registered"):
        DatasetCatalog.register(name, func)

    meta = MetadataCatalog.get(name).set(thing_classes=["cat"], evaluator_type="coco")
    assert MetadataCatalog.get(name) is meta and meta.thing_classes == ["cat"] and name in MetadataCatalog
    with pytest.raises(AssertionError, match="already 'coco'; refusing to change it to 'voc'"):
        MetadataCatalog.get(name).set(evaluator_type="voc")
    assert MetadataCatalog.pop(name) is meta and name not in MetadataCatalog
    assert MetadataCatalog.get(name).set(evaluator_type="voc").evaluator_type == "voc"  # a fresh one after pop
    MetadataCatalog.remove(name)
    with pytest.raises(KeyError, match=f"Dataset '{name}' has no metadata"):
        MetadataCatalog.remove(name)


def test_clear_empties_both_catalogs():
    datasets, metadata = dict(DatasetCatalog), dict(MetadataCatalog)
    try:
        DatasetCatalog.clear()
        MetadataCatalog.clear()
        assert DatasetCatalog.list() == [] and MetadataCatalog.list() == [] and "shapes_train" not in DatasetCatalog
        with pytest.raises(KeyError, match="'shapes_train' is not registered. Registered datasets: \\(none\\)"):
            DatasetCatalog.get("shapes_train")
    finally:
        DatasetCatalog.update(datasets)
        MetadataCatalog.update(metadata)
    assert "shapes_train" in DatasetCatalog.list()
