"""Registry: registration, lookup errors with close matches, duplicates, listing."""
import pytest

from detkit.registry import Registry


def _make():
    reg = Registry("WIDGET")

    @reg.register()
    class RegNetX400MF:
        pass

    def resnet():
        return "resnet"

    reg.register(resnet)
    return reg, RegNetX400MF, resnet


def test_register_as_decorator_and_call():
    reg, cls, fn = _make()
    assert reg.get("RegNetX400MF") is cls
    assert reg.get("resnet") is fn
    assert "resnet" in reg and "nope" not in reg
    assert [name for name, _ in reg] == ["RegNetX400MF", "resnet"]
    assert len(reg) == 2


def test_unknown_name_names_registry_close_matches_and_all_names():
    reg, _, _ = _make()
    with pytest.raises(KeyError) as e:
        reg.get("RegNetX400")
    msg = str(e.value)
    assert "WIDGET registry" in msg
    assert "Did you mean 'RegNetX400MF'" in msg
    assert "Registered names: RegNetX400MF, resnet" in msg


def test_registering_twice_names_both_modules():
    reg, _, _ = _make()
    dup = type("resnet", (), {"__module__": "my_plugin.parts"})
    with pytest.raises(KeyError) as e:
        reg.register(dup)
    msg = str(e.value)
    assert "'resnet' is already registered in the WIDGET registry" in msg
    assert "tests.test_registry" in msg or "test_registry" in msg
    assert "my_plugin.parts" in msg


def test_listing_is_a_table_of_names_and_modules():
    reg, _, _ = _make()
    text = reg.table()
    assert "Name" in text and "Defined in" in text
    assert "RegNetX400MF" in text and "test_registry" in text
    assert repr(reg).startswith("Registry of WIDGET:")
