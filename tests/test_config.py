import pytest
import yaml

from musculo.config import load_config
from musculo.errors import ConfigError


def test_project_config_validates_with_defaults(repo_root):
    cfg = load_config(repo_root / "config" / "config.yaml")
    assert cfg["data"]["mirror"] == [] and isinstance(cfg["seed"], int)
    ci = load_config(repo_root / "config" / "config.yaml", [repo_root / "config" / "ci.yaml"])
    assert ci["seed"] == cfg["seed"]
    # the CI subject list names demo subjects, one of every lab at least
    from musculo.subject import discover_subjects, load_subject

    demo = discover_subjects(repo_root / "subjects")
    assert ci["subjects"] and set(ci["subjects"]) <= set(demo)
    labs = {s.split("-")[0] for s in demo}
    assert labs == {s.split("-")[0] for s in ci["subjects"]}
    assert all(load_subject(repo_root / "subjects" / s).id == s for s in ci["subjects"])


def test_unknown_config_key_is_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"subjcts": []}))
    with pytest.raises(ConfigError, match="'subjcts'"):
        load_config(path)
