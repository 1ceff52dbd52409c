import shutil
from pathlib import Path

import pytest

from musculo import datasets
from musculo.cli import main
from musculo.errors import ChecksumError, DatasetError


def test_registry_covers_every_dataset_with_pinned_urls():
    reg = datasets.registry()
    assert len(reg) >= 100
    for item in reg.values():
        assert len(item.commit) == 40 and len(item.sha256) == 64
        assert item.url.startswith(f"https://raw.githubusercontent.com/{item.source_repo}/{item.commit}/")
        assert " " not in item.url
    assert {"motonms-unipd", "rajagopal-walk", "biomechzoo", "opensim-models"} <= set(datasets.datasets())


def test_verify_every_file_in_mirror(capsys):
    assert main(["datasets", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"{len(datasets.registry())} files verified, 0 problems" in out


def _mirror_copy(tmp_path: Path, dataset: str, file: str, dataset_file) -> Path:
    src = dataset_file(dataset, file)
    dst = tmp_path / "mirror" / dataset / file
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    return dst


def test_corrupted_mirror_copy_fails_naming_file_and_hashes(tmp_path, dataset_file, monkeypatch, capsys):
    dst = _mirror_copy(tmp_path, "motonms-unipd", "acquisition.xml", dataset_file)
    with open(dst, "ab") as handle:
        handle.write(b"x")
    expected = datasets.entry("motonms-unipd", "acquisition.xml").sha256
    with pytest.raises(ChecksumError) as info:
        datasets.dataset_path("motonms-unipd", "acquisition.xml", mirrors=[tmp_path / "mirror"])
    message = str(info.value)
    assert "motonms-unipd/acquisition.xml" in message and expected in message
    assert datasets.sha256sum(dst) in message
    monkeypatch.setenv(datasets.MIRROR_ENV, str(tmp_path / "mirror"))
    assert main(["datasets", "verify", "--dataset", "motonms-unipd"]) == 1
    assert "acquisition.xml" in capsys.readouterr().err


def test_no_mirror_no_cache_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.MIRROR_ENV, "")
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=datasets.MIRROR_ENV):
        datasets.dataset_path("motonms-unipd", "acquisition.xml", download=False)


def test_offline_download_failure_names_the_variable(tmp_path, monkeypatch):
    import pooch

    def offline(**kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.setenv(datasets.MIRROR_ENV, "")
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=datasets.MIRROR_ENV):
        datasets.dataset_path("motonms-unipd", "acquisition.xml")


def test_cache_is_used_and_verified(tmp_path, monkeypatch, dataset_file):
    source = dataset_file("motonms-unipd", "acquisition.xml")
    monkeypatch.setenv(datasets.MIRROR_ENV, "")
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "motonms-unipd" / "acquisition.xml"
    cached.parent.mkdir(parents=True)
    shutil.copy(source, cached)
    assert datasets.dataset_path("motonms-unipd", "acquisition.xml", download=False) == cached


def test_unknown_file_lists_the_dataset_files():
    with pytest.raises(DatasetError, match="Walking1.c3d"):
        datasets.entry("motonms-unipd", "Walking9.c3d")
