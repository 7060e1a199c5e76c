"""core.validate: one typed field reader whose errors name the field by its path."""

from __future__ import annotations

import pytest

from mlx_stack.core.validate import Fields, from_text, in_file, is_int, is_number
from mlx_stack.errors import StateError


def _fields(data: object, **kw: object) -> Fields:
    return Fields(data, error=in_file("f.yaml", StateError, "fix it"), **kw)  # type: ignore[arg-type]


def test_typed_access_and_defaults():
    f = _fields({"a": 1, "b": None, "c": "x", "d": {"e": 2.5}})
    assert f.get("a", int) == 1
    assert f.optional("b", int) is None and f.optional("b", int, 7) == 7
    assert f.optional("zz", str, "dflt") == "dflt"
    assert f.choice("c", ("x", "y")) == "x"
    assert f.sub("d").number("e", 0, 10) == 2.5
    assert f.optional_sub("zz") is None
    assert f.peek("a", str) is None and f.peek("c", str) == "x"


@pytest.mark.parametrize(("data", "call", "message"), [
    ({}, lambda f: f.get("a", int), "f.yaml: a: missing"),
    ({"a": "1"}, lambda f: f.get("a", int), "f.yaml: a: expected int, found str"),
    ({"a": True}, lambda f: f.get("a", (str, int)), "f.yaml: a: expected str or int, found bool"),
    ({"a": 99}, lambda f: f.integer("a", 1, 10), "f.yaml: a: expected a whole number from 1 to 10, found 99"),
    ({"a": "q"}, lambda f: f.choice("a", ("x", "y")), "f.yaml: a: expected one of x, y, found 'q'"),
    ({"a": {"b": []}}, lambda f: f.sub("a").get("b", str), "f.yaml: a.b: expected str, found list"),
    ({"zz": 1}, lambda f: f.unknown(("a",)), "f.yaml: zz: unknown field"),
    ({"zz": 1}, lambda f: f.unknown(("b", "a"), list_known=True), "f.yaml: zz: unknown field; known: a, b"),
])
def test_errors_name_file_and_field(data, call, message):
    with pytest.raises(StateError) as err:
        call(_fields(data))
    assert err.value.message == message and err.value.hint == "fix it"


def test_the_mapping_itself_and_booleans():
    with pytest.raises(StateError, match=r"^f.yaml: \(top level\): expected a mapping, found list$"):
        _fields([])
    with pytest.raises(StateError, match=r"^f\.yaml: top: expected a mapping"):
        _fields(3, top="top")
    with pytest.raises(StateError, match="expected float, found a boolean"):
        _fields({"n": False}, bool_as="a boolean").number("n", 0, 1)


def test_predicates_and_text():
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_number(3.5) and is_number(2) and not is_number(False)
    assert from_text("12", int) == 12 and from_text("1.5", float) == 1.5
    assert from_text("twelve", int) == "twelve" and from_text("07", str) == "07"


def test_unknown_fields_of_mixed_key_types_are_named_not_a_type_error() -> None:
    fields = _fields({"name": "x", 3: "y", "zzz": 1})
    with pytest.raises(StateError, match="3: unknown field"):
        fields.unknown(["name"])
