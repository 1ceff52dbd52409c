"""Registry of the public datasets musculo uses, with checksummed fetching.

Every file is named by ``(dataset, file)`` in ``musculo/data/registry.tsv`` with its upstream
repository, the pinned commit, its path there and its sha256. :func:`dataset_path` looks in local
mirror folders first (``MUSCULO_DATA_MIRROR``, several separated by ``os.pathsep``, or the config
key ``data.mirror``), then in the download cache, and otherwise downloads the upstream raw file at
the pinned commit with pooch. Every path it returns has been checked against its sha256.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from musculo import logger
from musculo.errors import ChecksumError, DatasetError
from musculo.io.atomic import sha256sum

MIRROR_ENV = "MUSCULO_DATA_MIRROR"
CACHE_ENV = "MUSCULO_CACHE"


@dataclass(frozen=True)
class RegistryEntry:
    """One file of a registered dataset."""

    dataset: str
    file: str
    source_repo: str
    commit: str
    source_path: str
    sha256: str

    @property
    def url(self) -> str:
        """Raw-file URL of the file at the pinned commit."""
        return (
            f"https://raw.githubusercontent.com/{self.source_repo}/{self.commit}/"
            f"{quote(self.source_path)}"
        )


@functools.cache
def registry() -> dict[tuple[str, str], RegistryEntry]:
    """Return the registry, keyed by ``(dataset, file)``."""
    text = resources.files("musculo").joinpath("data/registry.tsv").read_text()
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return {(r["dataset"], r["file"]): RegistryEntry(**r) for r in rows}


def datasets() -> list[str]:
    """Names of the registered datasets."""
    return sorted({key[0] for key in registry()})


def entry(dataset: str, file: str) -> RegistryEntry:
    """Return the registry entry of one file, or raise a :class:`DatasetError` naming it."""
    try:
        return registry()[(dataset, file)]
    except KeyError:
        known = sorted(f for d, f in registry() if d == dataset)
        if not known:
            raise DatasetError(
                f"unknown dataset {dataset!r}; registered datasets: {', '.join(datasets())}"
            ) from None
        raise DatasetError(
            f"dataset {dataset!r} has no file {file!r}; its files are: {', '.join(known)}"
        ) from None


def mirror_dirs(extra: list[str | os.PathLike[str]] | None = None) -> list[Path]:
    """Mirror folders to search: ``extra`` (from config) first, then ``MUSCULO_DATA_MIRROR``."""
    dirs = [Path(p) for p in (extra or []) if p]
    env = os.environ.get(MIRROR_ENV, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs


def cache_dir() -> Path:
    """Download cache folder (``MUSCULO_CACHE`` or the platform cache)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import pooch

    return Path(pooch.os_cache("musculo"))


@functools.lru_cache(maxsize=4096)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    return sha256sum(path)


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised on (path, size, mtime)."""
    stat = path.stat()
    return _hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def verify_file(path: Path, item: RegistryEntry) -> None:
    """Raise :class:`ChecksumError` if ``path`` is not the registered file."""
    got = file_sha256(path)
    if got != item.sha256:
        raise ChecksumError(
            f"checksum mismatch for {item.dataset}/{item.file} at {path}: expected sha256 "
            f"{item.sha256}, got {got}. The copy is corrupt or a different version: delete it "
            f"(or restore the mirror) and fetch again."
        )


def dataset_path(
    dataset: str,
    file: str,
    *,
    mirrors: list[str | os.PathLike[str]] | None = None,
    download: bool = True,
) -> Path:
    """Return a verified local path of a registered file, fetching it if needed.

    Order: each mirror folder (``<mirror>/<dataset>/<file>``), then the cache, then a download
    of the upstream file at the pinned commit (checked against the registered sha256).
    """
    item = entry(dataset, file)
    for root in mirror_dirs(mirrors):
        candidate = root / dataset / file
        if candidate.is_file():
            verify_file(candidate, item)
            return candidate
    cached = cache_dir() / dataset / file
    if cached.is_file():
        verify_file(cached, item)
        return cached
    searched = ", ".join(str(p) for p in mirror_dirs(mirrors)) or "none"
    if not download:
        raise DatasetError(
            f"{dataset}/{file} is in no mirror (searched: {searched}) nor in the cache {cache_dir()}; "
            f"set {MIRROR_ENV} (or config data.mirror) to a folder holding {dataset}/{file}, "
            f"or run `musculo datasets fetch --dataset {dataset}` on a machine with internet."
        )
    import pooch

    logger.info("downloading %s/%s from %s", dataset, file, item.url)
    try:
        got = pooch.retrieve(
            url=item.url,
            known_hash=f"sha256:{item.sha256}",
            fname=Path(file).name,
            path=cached.parent,
            progressbar=False,
        )
    except ValueError as exc:  # pooch raises ValueError on a hash mismatch
        raise ChecksumError(f"{dataset}/{file} downloaded from {item.url}: {exc}") from exc
    except Exception as exc:  # network errors come in many types (requests, OSError, ...)
        raise DatasetError(
            f"could not download {dataset}/{file} from {item.url} ({type(exc).__name__}: {exc}) and "
            f"no mirror holds it (searched: {searched}). Set {MIRROR_ENV} to a folder that holds "
            f"{dataset}/{file} (for example a copy of the datasets folder), or config data.mirror."
        ) from exc
    return Path(got)


def fetch(
    dataset: str | None = None, *, mirrors: list[str | os.PathLike[str]] | None = None
) -> list[Path]:
    """Fetch and verify every file of ``dataset`` (or of every dataset)."""
    names = [dataset] if dataset else datasets()
    for name in names:
        if name not in datasets():
            entry(name, "")  # raises a DatasetError listing the datasets
    return [dataset_path(d, f, mirrors=mirrors) for d, f in sorted(registry()) if d in names]


def verify(
    dataset: str | None = None, *, mirrors: list[str | os.PathLike[str]] | None = None
) -> tuple[list[Path], list[str]]:
    """Verify every registered file found locally without downloading.

    Returns (verified paths, problems). A problem is a missing file or a checksum mismatch.
    """
    ok: list[Path] = []
    problems: list[str] = []
    for d, f in sorted(registry()):
        if dataset and d != dataset:
            continue
        try:
            ok.append(dataset_path(d, f, mirrors=mirrors, download=False))
        except DatasetError as exc:
            problems.append(str(exc))
    return ok, problems
