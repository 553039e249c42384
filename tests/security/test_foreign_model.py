"""Only OmniReID models load: a foreign pyfunc registered under our name is refused by reading
its MLmodel, before anything of it is unpickled or imported."""

from __future__ import annotations

import copy

import pytest

from experiments.pyfunc import FORMAT_VERSION, ModelFormatError, check_mlmodel

OURS = {
    "flavors": {
        "python_function": {
            "code": None,
            "data": "data/omnireid",
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "loader_module": "experiments.pyfunc",
            "python_version": "3.11.7",
            "streamable": False,
        }
    },
    "metadata": {"format_version": FORMAT_VERSION, "omnireid_version": "0.1.0"},
}


def _variant(path: str, value) -> dict:
    doc = copy.deepcopy(OURS)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


def test_our_mlmodel_passes():
    check_mlmodel(OURS, "models:/omnireid/1")


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("flavors.python_function.loader_module", "mlflow.pyfunc.model", "mlflow.pyfunc.model"),
        ("flavors.python_function.python_model", "python_model.pkl", "python_model"),
        ("flavors.python_function.cloudpickle_version", "3.1.1", "cloudpickle_version"),
        ("flavors.python_function.code", "code", "code"),
        ("flavors.python_function.model_code_path", "m.py", "model_code_path"),
        ("flavors.sklearn", {"pickled_model": "model.pkl"}, "sklearn"),
        ("flavors.python_function.data", "../../outside", "not inside the model"),
        ("flavors.python_function.data", "/etc", "not inside the model"),
        ("flavors.python_function.data", None, "not inside the model"),
        ("flavors.python_function", KeyError, "no python_function flavor"),
        ("metadata", KeyError, "format version None"),
        ("metadata.format_version", FORMAT_VERSION + 1, f"format version {FORMAT_VERSION + 1}"),
        ("metadata.format_version", str(FORMAT_VERSION), "format version"),
    ],
)
def test_anything_else_is_refused_in_one_line(path, value, says):
    with pytest.raises(ModelFormatError) as err:
        check_mlmodel(_variant(path, value), "models:/omnireid@champion")
    message = str(err.value)
    assert says in message and message.startswith("models:/omnireid@champion: ")
    assert "\n" not in message


@pytest.mark.parametrize("doc", [None, [], "flavors", {"flavors": []}, {"flavors": {"x": 1}}])
def test_malformed_mlmodel_documents_are_refused(doc):
    with pytest.raises(ModelFormatError):
        check_mlmodel(doc, "m")


def test_control_characters_in_a_foreign_loader_name_are_escaped():
    doc = _variant("flavors.python_function.loader_module", "evil\nerror: forged line")
    with pytest.raises(ModelFormatError) as err:
        check_mlmodel(doc, "m")
    assert "\n" not in str(err.value) and "\\n" in str(err.value)
