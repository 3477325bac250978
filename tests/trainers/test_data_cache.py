"""The on-disk cache of generated data (`trainers.datacache`) and MNIST-1D through it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from tunelab.trainers import datacache, workloads


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test here caches into its own temporary folder, never the user's home."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(datacache.CACHE_DIR_ENV, str(folder))
    workloads._mnist1d_arrays.cache_clear()
    yield folder
    workloads._mnist1d_arrays.cache_clear()


@pytest.fixture(scope="module")
def published() -> dict[str, np.ndarray]:
    """MNIST-1D as the mnist1d package generates it with its defaults (what tunelab generated before the cache)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()
    data = make_dataset(get_dataset_args())
    np.random.set_state(state)
    return {name: data[name] for name in ("x", "y", "x_test", "y_test")}


def _arrays(name: str = "a") -> dict[str, np.ndarray]:
    return {"x": np.arange(12, dtype=np.float64).reshape(3, 4) + len(name), "y": np.array([1, 2, 3], dtype=np.int64)}


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _mnist1d_file() -> Path:
    from importlib.metadata import version

    path = datacache.cache_path(workloads.MNIST1D_GENERATOR, workloads.MNIST1D_ARGS, version("mnist1d"))
    assert path is not None
    return path


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    assert datacache.cache_dir() == tmp_path / "cache"  # TUNELAB_CACHE_DIR (the autouse fixture)
    monkeypatch.delenv(datacache.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datacache.cache_dir() == tmp_path / "xdg" / "tunelab"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid by the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datacache.cache_dir() == tmp_path / "home" / ".cache" / "tunelab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datacache.cache_dir() == tmp_path / "home" / ".cache" / "tunelab"


def test_the_key_changes_with_the_arguments_the_version_and_the_generator():
    args = {"num_samples": 5000, "seed": 42, "padding": [36, 60]}
    key = datacache.cache_key("mnist1d.data:make_dataset", args, "0.0.2")
    assert key == datacache.cache_key("mnist1d.data:make_dataset", dict(reversed(args.items())), "0.0.2")
    others = [
        datacache.cache_key("mnist1d.data:make_dataset", {**args, "seed": 43}, "0.0.2"),
        datacache.cache_key("mnist1d.data:make_dataset", {**args, "padding": [36, 61]}, "0.0.2"),
        datacache.cache_key("mnist1d.data:make_dataset", {**args, "shuffle_seq": True}, "0.0.2"),
        datacache.cache_key("mnist1d.data:make_dataset", args, "0.0.3"),
        datacache.cache_key("other:make", args, "0.0.2"),
    ]
    assert len({key, *others}) == 6
    paths = {datacache.cache_path("mnist1d.data:make_dataset", {**args, "seed": s}, "0.0.2") for s in range(5)}
    assert len(paths) == 5


def test_mnist1d_args_are_the_packages_defaults():
    from mnist1d.data import get_dataset_args

    defaults = get_dataset_args(as_dict=True)
    defaults.pop("url")  # where the package downloads its pickle from; not an argument of the generation
    assert defaults == workloads.MNIST1D_ARGS


def test_mnist1d_is_generated_once_then_read_and_rebuilt_when_corrupt(cache, monkeypatch, published):
    first = workloads.mnist1d()
    path = _mnist1d_file()
    assert path.parent == cache and path.exists()
    assert _equal(dict(zip(("x", "y", "x_test", "y_test"), workloads._mnist1d_arrays(), strict=True)), published)
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left behind

    def no_generation() -> None:
        raise AssertionError("generated although the cache holds the data")

    generate = workloads.generate_mnist1d
    workloads._mnist1d_arrays.cache_clear()
    monkeypatch.setattr(workloads, "generate_mnist1d", no_generation)
    again = workloads.mnist1d()
    assert all(np.array_equal(getattr(again, s).x.numpy(), getattr(first, s).x.numpy()) for s in ("train", "val"))
    monkeypatch.setattr(workloads, "generate_mnist1d", generate)

    path.write_bytes(b"not an npz file" * 100)  # garbage: rebuilt, with no error
    workloads._mnist1d_arrays.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workloads.mnist1d()
    assert _equal(dict(zip(("x", "y", "x_test", "y_test"), workloads._mnist1d_arrays(), strict=True)), published)
    with np.load(path, allow_pickle=False) as stored:  # and the file was written again, whole
        assert _equal({k: stored[k] for k in ("x", "y", "x_test", "y_test")}, published)


def test_generating_mnist1d_leaves_the_global_generators_alone():
    import random

    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    data = workloads.generate_mnist1d()
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before
    assert {k: v.shape for k, v in data.items()} == {"x": (4000, 40), "y": (4000,), "x_test": (1000, 40),
                                                     "y_test": (1000,)}


def _cached(calls: list[int], name: str = "a") -> dict[str, np.ndarray]:
    def make() -> dict[str, np.ndarray]:
        calls.append(1)
        return _arrays(name)

    return datacache.cached_arrays("gen:make", {"name": name}, "1.0", make)


def test_cached_arrays_are_made_once_then_read():
    calls: list[int] = []
    assert _equal(_cached(calls), _arrays()) and calls == [1]
    assert _equal(_cached(calls), _arrays()) and calls == [1]
    assert _equal(_cached(calls, "bb"), _arrays("bb")) and calls == [1, 1]  # other arguments: another file


class _Marker:
    """Unpickling this creates a file: proof that a cache file was unpickled."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


def _damage(path: Path, how: str, tmp_path: Path) -> None:
    good = _arrays()
    if how == "garbage":
        path.write_bytes(os.urandom(2000))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "tampered":  # the arrays changed, the stored fingerprint did not
        with np.load(path, allow_pickle=False) as stored:
            entries = {k: stored[k] for k in stored.files}
        entries["x"] = entries["x"] + 1.0
        np.savez(path, **entries)
    elif how == "no fingerprint":
        np.savez(path, **good, **{datacache.KEY: np.str_(datacache.cache_key("gen:make", {"name": "a"}, "1.0"))})
    elif how == "other key":
        np.savez(path, **good, **{datacache.KEY: np.str_("0" * 64), datacache.FINGERPRINT:
                                  np.str_(datacache.fingerprint(good))})
    elif how == "pickle":
        marker = _Marker()
        _Marker.path = str(tmp_path / "unpickled")
        np.savez(path, x=np.array([marker], dtype=object), y=good["y"])
    elif how == "folder":
        path.unlink()
        path.mkdir()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "tampered", "no fingerprint", "other key", "pickle"])
def test_a_damaged_cache_file_is_made_again_without_error(how, tmp_path, capsys):
    calls: list[int] = []
    _cached(calls)
    (path,) = datacache.cache_dir().glob("*.npz")
    _damage(path, how, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _equal(_cached(calls), _arrays())
    assert calls == [1, 1]
    assert _equal(_cached(calls), _arrays()) and calls == [1, 1]  # the file was replaced by a whole one
    assert not (tmp_path / "unpickled").exists()  # never unpickled
    assert capsys.readouterr() == ("", "")


def test_where_the_cache_cannot_be_written_the_data_is_made_in_memory(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(datacache.CACHE_DIR_ENV, str(blocker / "cache"))  # mkdir fails, as in a read-only home
    calls: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _equal(_cached(calls), _arrays()) and _equal(_cached(calls), _arrays())
    assert calls == [1, 1]  # made each time, silently
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv(datacache.CACHE_DIR_ENV, str(tmp_path / "ok"))
    _cached(calls)
    (path,) = (tmp_path / "ok").glob("*.npz")
    _damage(path, "folder", tmp_path)  # a folder where the file should be: read fails, write fails, both silent
    assert _equal(_cached(calls), _arrays()) and calls == [1, 1, 1, 1]
