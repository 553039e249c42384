from __future__ import annotations

import json

import yaml

from studies.cli import main


def test_config_show_resolves_overrides(capsys):
    assert main(["config", "show", "--preset", "micro", "--set", "model.lora.rank=8"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["lora"]["rank"] == 8 and shown["data"]["height"] == 32


def test_config_schema_prints_json(capsys):
    assert main(["config", "schema"]) == 0
    assert "properties" in json.loads(capsys.readouterr().out)


def test_user_error_is_one_line_exit_2(capsys):
    assert main(["config", "show", "--preset", "micro", "--set", "data.k=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "data.k" in err


def test_unknown_command_is_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err
