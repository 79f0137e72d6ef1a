"""The throttled file watch the gateway's reloadable files share: at most one look per
period, a change seen once, a replaced file seen even when size and time agree, a file
gone and back."""

import os

import pytest

from online import file_watch


def test_looks_are_throttled_and_a_change_is_reported_once(tmp_path):
  path = str(tmp_path / "f.json")
  with open(path, "w", encoding="utf-8") as f:
    f.write("1")
  now = [0.0]
  seen = []
  watch = file_watch.FileWatch(path, 1.0, clock=lambda: now[0])
  assert watch.look(lambda: seen.append("a")) == file_watch.CHANGED
  assert watch.look(lambda: seen.append("b")) == file_watch.NOT_YET
  now[0] = 1.0
  assert watch.look(lambda: seen.append("c")) == file_watch.UNCHANGED
  # Same size and modification time, a new inode: an atomic replace is still a change.
  stamp = os.stat(path)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write("2")
  os.utime(path + ".tmp", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
  os.replace(path + ".tmp", path)
  now[0] = 2.0
  assert watch.look(lambda: seen.append("d")) == file_watch.CHANGED
  assert seen == ["a", "d"]


def test_a_missing_file_and_its_return(tmp_path):
  path = str(tmp_path / "f.json")
  now = [0.0]
  events = []
  watch = file_watch.FileWatch(path, 0.0, clock=lambda: now[0], look_now=False)
  assert watch.look(lambda: events.append("change"),
                    on_missing=lambda: events.append("gone")) == file_watch.MISSING
  with open(path, "w", encoding="utf-8") as f:
    f.write("x")
  assert watch.look(lambda: events.append("change")) == file_watch.CHANGED
  assert events == ["gone", "change"]


def test_known_stamp_and_first_look_delay(tmp_path):
  path = str(tmp_path / "f.json")
  with open(path, "w", encoding="utf-8") as f:
    f.write("x")
  now = [10.0]
  watch = file_watch.FileWatch(path, 5.0, clock=lambda: now[0],
                               known=file_watch.stamp_of(path), look_now=False)
  assert watch.look(lambda: None) == file_watch.NOT_YET
  now[0] = 15.0
  assert watch.look(lambda: pytest.fail("not changed")) == file_watch.UNCHANGED
  with pytest.raises(ValueError, match="check_every_s"):
    file_watch.FileWatch(path, -1.0)
