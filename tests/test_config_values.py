"""Properties of the config value parsers, checked over many generated
inputs: exit-code ranges mean what the operators say, decimal limits are exact,
every signal name and number is read, and plain JSON reads as JSON."""

from __future__ import annotations

import json
import operator
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palhm_core.config.files import parse_file
from palhm_core.config.place import Place
from palhm_core.config.values import parse_limit
from palhm_core.errors import ConfigError
from palhm_core.execs import ExitCodes
from palhm_core.sigmask import parse_signal

HERE = Place("test.json", ("x",))
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
SPACE = st.text(" \t", max_size=3)


@given(st.sampled_from(sorted(OPS)), st.integers(0, 300), SPACE, SPACE, SPACE)
def test_comparison_forms_accept_what_the_operator_says(op, n, a, b, c):
    text = f"{a}{op}{b}{n}{c}"
    accepted = [code for code in range(256) if OPS[op](code, n)]
    if not accepted:
        with pytest.raises(ConfigError, match="accepts no exit code"):
            ExitCodes.parse(text, HERE)
        return
    ec = ExitCodes.parse(text, HERE)
    assert [code for code in range(-64, 300) if code in ec] == accepted
    assert ec.text == text.strip()


@given(st.integers(0, 255), st.integers(0, 255), SPACE, SPACE)
def test_range_and_number_forms(low, high, a, b):
    if low <= high:
        ec = ExitCodes.parse(f"{a}{low}{b}-{a}{high}{b}", HERE)
        assert [c for c in range(256) if c in ec] == list(range(low, high + 1))
    else:
        with pytest.raises(ConfigError, match="is above"):
            ExitCodes.parse(f"{low}-{high}", HERE)
    assert [c for c in range(256) if c in ExitCodes.parse(f"{a}{low}{b}", HERE)] == [low]


@given(st.text(max_size=8))
def test_anything_else_is_refused_or_is_one_of_the_forms(text):
    import re

    form = re.fullmatch(r"\s*(?:(?:<=|>=|==|<|>)?\s*[0-9]+|[0-9]+\s*-\s*[0-9]+)\s*", text)
    try:
        ExitCodes.parse(text, HERE)
    except ConfigError as e:
        assert str(e).startswith("test.json: x: ")
        assert "\n" not in str(e)
    else:
        assert form, text


@given(st.integers(0, 10**60), st.sampled_from(["", ".0", ".5", ".999999999999999999"]))
def test_limits_are_exact_and_fractions_ignored(n, fraction):
    assert parse_limit(f"{n}{fraction}", HERE) == n
    assert parse_limit(f"  {n}{fraction} ", HERE) == n
    assert parse_limit(n, HERE) == n


@given(st.sampled_from(["inf", "+inf", "-inf", "Infinity", "-Infinity", "INF", " infinity "]))
def test_infinities_disable_the_limit(text):
    assert parse_limit(text, HERE) is None
    assert parse_limit(float(text), HERE) is None


@given(st.integers(max_value=-1) | st.text(min_size=1).filter(lambda t: not _decimal(t)))
def test_negatives_and_junk_are_refused_in_one_line(value):
    with pytest.raises(ConfigError) as e:
        parse_limit(value, HERE)
    assert "\n" not in str(e.value) and str(e.value).startswith("test.json: x: ")


def _decimal(text: str) -> bool:
    import decimal

    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return text.strip().lower() in ("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")
    return not number.is_nan() and (number >= 0 or number.is_infinite() or number.adjusted() > 100)


BLOCKABLE = sorted(set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}, key=int)


@pytest.mark.parametrize("sig", BLOCKABLE, ids=lambda s: s.name)
def test_every_signal_by_name_short_name_and_number(sig):
    for spelling in (sig.name, sig.name[3:], sig.name.lower(), int(sig), str(int(sig))):
        assert parse_signal(spelling, HERE) == int(sig)


def test_real_time_signals_by_number_and_unblockable_ones_refused():
    rt = signal.SIGRTMIN + 1
    assert parse_signal(int(rt), HERE) == rt
    for bad in ("KILL", "SIGSTOP", 9):
        with pytest.raises(ConfigError, match="cannot be blocked"):
            parse_signal(bad, HERE)
    for bad in ("SIGFOO", "", 0, -15, 1000, "1.5", True, None, "SIG_DFL"):
        with pytest.raises(ConfigError, match="unknown signal"):
            parse_signal(bad, HERE)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), JSON_VALUES, max_size=5), st.sampled_from([None, 2]))
def test_plain_json_reads_as_json(tmp_path_factory, doc, indent):
    path = tmp_path_factory.mktemp("json") / "palhm.json"
    path.write_text(json.dumps(doc, indent=indent))
    assert parse_file(str(path)) == doc


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1), JSON_VALUES, min_size=1, max_size=5))
def test_yaml_written_by_pyyaml_reads_back(tmp_path_factory, doc):
    import yaml

    path = tmp_path_factory.mktemp("yaml") / "palhm.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert parse_file(str(path)) == doc
