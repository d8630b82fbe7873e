"""ServeConfig, the NAME=DIR flags and the per-request vllm_xargs: every bad value gets one line naming it."""

from __future__ import annotations

import pytest

from crossmodel.serve import ENV_VAR, DeltaRequest, ServeConfig, ServedDelta, delta_request, named_paths, serve_config


def test_config_round_trips_through_the_environment(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "m").mkdir()
    config = serve_config({"facts": tmp_path / "d"}, {"facts": tmp_path / "m"}, fill=-5.0, alphas={"facts": 0.5})
    again = ServeConfig.from_env({ENV_VAR: config.to_json()})
    assert again == config and again.names == ["facts"] and again.deltas[0].token_map == str(tmp_path / "m")
    assert again.deltas[0].alpha == 0.5


@pytest.mark.parametrize("call, match", [
    (lambda: ServeConfig.from_env({}), "crossmodel serve --delta NAME=DIR"),
    (lambda: ServeConfig.from_json("{"), "does not hold a crossmodel serve config"),
    (lambda: ServeConfig((ServedDelta("a", "x"), ServedDelta("a", "y"))), r"\['a'\] are given twice"),
    (lambda: ServedDelta("bad name", "x"), "'bad name' must be letters"),
    (lambda: named_paths("--delta", ["facts"]), "--delta 'facts' must be NAME=DIR"),
    (lambda: named_paths("--map", ["a=x", "a=y"]), "--map names 'a' twice"),
    (lambda: serve_config({"a": "/no/such/dir"}), "--delta a=/no/such/dir: no such directory"),
    (lambda: serve_config({}, {"a": "x"}), r"--map names \['a'\] that no --delta hosts"),
    (lambda: serve_config({}, {}, alphas={"b": 0.5}), r"--calibration names \['b'\] that no --delta hosts"),
    (lambda: ServedDelta("a", "x", alpha=float("inf")), "default alpha of delta a=inf is out of range"),
])
def test_bad_config_values_are_named(call, match):
    with pytest.raises((ValueError, OSError), match=match):
        call()


def test_delta_request():
    assert delta_request(None, ["facts"]) is None
    assert delta_request({"other_processor": 3}, ["facts"]) is None
    assert delta_request({"delta": "facts"}, ["facts"]) == DeltaRequest("facts", None)
    assert delta_request({"delta": "facts", "alpha": "0.5"}, ["facts"]) == DeltaRequest("facts", 0.5)


@pytest.mark.parametrize("args, match", [
    ({"delta": "nope"}, r"delta='nope' is not a delta this server hosts; choose one of \['facts'\]"),
    ({"delta": 3}, "delta=3 is not a delta"),
    ({"alpha": 1.0}, "has 'alpha' but no 'delta'"),
    ({"delta": "facts", "alpha": "strong"}, "alpha='strong' must be a number"),
    ({"delta": "facts", "alpha": True}, "alpha=True must be a number"),
    ({"delta": "facts", "alpha": float("nan")}, "out of range"),
    ({"delta": "facts", "alpha": 1000}, "out of range"),
])
def test_bad_requests_name_the_value(args, match):
    with pytest.raises(ValueError, match=match):
        delta_request(args, ["facts"])
