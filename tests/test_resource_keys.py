"""OTEL_RESOURCE_ATTRIBUTES keys are taken as written, as the SDK takes them (it percent-decodes only the
values): found by the differential test (tests/test_differential.py)."""

from __future__ import annotations

from cryostorm_run import load_settings
from cryostorm_run.common.runtime import parse_pairs, runtime_from_env
from cryostorm_run.launch.envmap import settings_env


def test_a_percent_encoded_key_stays_as_written_and_its_value_is_decoded() -> None:
    env = settings_env(load_settings({"OTEL_RESOURCE_ATTRIBUTES": "k%2Cx=v%3Dy,team=core"}, config_dir=None).settings)
    attributes = runtime_from_env(env).resource_attributes
    assert attributes["k%2Cx"] == "v=y" and attributes["team"] == "core"
    assert "k,x" not in attributes


def test_header_names_are_still_decoded_as_the_exporters_decode_them() -> None:
    assert parse_pairs("x%2Dkey=a%20b") == {"x-key": "a b"}
    assert parse_pairs("x%2Dkey=a%20b", decode_keys=False) == {"x%2Dkey": "a b"}
