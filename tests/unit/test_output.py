from __future__ import annotations

from strata.cli.output import Cell, dump_json, render_table


def test_table_matches_systemd_layout() -> None:
    text = render_table(["hierarchy", "extensions", "since"], [["/usr", "none", None]])
    assert text == "HIERARCHY EXTENSIONS SINCE\n/usr      none       -\n"


def test_table_multiline_and_no_legend() -> None:
    rows: list[list[Cell]] = [["/opt", ["alpha", "beta"], "T"], ["/usr", "none", None]]
    assert render_table(["hierarchy", "extensions", "since"], rows, legend=False) == (
        "/opt alpha T\n     beta  \n/usr none  -\n")


def test_json_pretty_uses_tabs_and_spaced_colons() -> None:
    text = dump_json([{"name": "a", "time": 1, "l": ["x"], "n": None}], "pretty")
    assert text == ('[\n\t{\n\t\t"name" : "a",\n\t\t"time" : 1,\n\t\t"l" : [\n\t\t\t"x"\n\t\t],'
                    '\n\t\t"n" : null\n\t}\n]\n')


def test_json_short() -> None:
    assert dump_json([{"a": "b"}, {}], "short") == '[{"a":"b"},{}]\n'
    assert dump_json([], "pretty") == "[]\n"
