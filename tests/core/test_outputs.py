"""moevit.outputs: output paths checked up front, folders and files written all or nothing."""

import os

import pytest

from moevit.outputs import (OutputPathError, atomic_dir, atomic_file, check_output_dir,
                            check_output_file, write_text)


def test_atomic_dir_creates_the_folder_only_on_success(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(out) as stage:
            (stage / "a.txt").write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no folder, no staging leftovers
    with atomic_dir(out) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(".run.")
        (stage / "a.txt").write_text("done")
    assert (out / "a.txt").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # not mkdtemp's 0700


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_dir_into_an_existing_folder_replaces_only_its_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "a.txt").write_text("old")
    with pytest.raises(KeyError):
        with atomic_dir(out) as stage:
            (stage / "a.txt").write_text("new")
            raise KeyError("x")
    assert (out / "a.txt").read_text() == "old"
    with atomic_dir(out) as stage:
        (stage / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new" and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_atomic_file_and_write_text(tmp_path):
    f = tmp_path / "s.json"
    f.write_text("old")
    with pytest.raises(ValueError):
        with atomic_file(f) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert f.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
    write_text(f, "new", "--json")
    assert f.read_text() == "new"
    assert oct(f.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


@pytest.mark.parametrize("make, path, pattern", [
    ("file", "f", r"^--out '.*f' is a file, expected a folder \(new or existing\); remove it or "
                  r"choose another path$"),
    ("file", "f/sub/deeper", r"^--out '.*f/sub/deeper': '.*f' is a file, not a folder, so the "
                             r"folder cannot be created under it; choose a path inside a folder$"),
    (None, "", r"^--out is empty; pass a path \(e\.g\. --out runs/out\)$"),
    (None, "   ", r"^--out is empty"),
    ("broken_link", "link/x", r"^--out '.*link/x': '.*link' is a broken symbolic link, not a "
                              r"folder"),
])
def test_check_output_dir(tmp_path, make, path, pattern):
    if make == "file":
        (tmp_path / "f").write_text("x")
    if make == "broken_link":
        (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    target = tmp_path / path if path.strip() else path
    with pytest.raises(OutputPathError, match=pattern):
        check_output_dir(target)


def test_check_output_dir_unwritable_places():
    # we may run as root, so unwritable means a pseudo or read-only file system
    with pytest.raises(OutputPathError, match=r"^--out '/proc/x/y': cannot write in '/proc' "):
        check_output_dir("/proc/x/y")
    with pytest.raises(OutputPathError, match=r"^--out '/proc': cannot write in '/proc' "):
        check_output_dir("/proc")


def test_check_output_file(tmp_path):
    with pytest.raises(OutputPathError, match=r"^--json '.*' is a folder, expected a file name"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(OutputPathError, match=r"^--json '/dev/null' is a special file"):
        check_output_file("/dev/null", "--json")
    assert check_output_file(tmp_path / "new" / "s.json", "--json") == tmp_path / "new" / "s.json"
