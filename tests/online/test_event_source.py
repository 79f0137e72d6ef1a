"""Tests of online.event_source: complete lines past offsets, whatever the read size."""

from online import event_source
from online import state_store


def test_lines_across_read_chunks_and_a_line_being_written(tmp_path, monkeypatch):
  lines = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i * 3)) for i in range(12)]
  (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n" + b'{"half": ')
  (tmp_path / "b.jsonl").write_bytes(b"\n".join(lines[:2]) + b"\n")
  source = event_source.DirectorySource(str(tmp_path))
  whole, whole_offsets = source.read({}, 100)
  monkeypatch.setattr(event_source, "_CHUNK_BYTES", 7)
  block, offsets = source.read({}, 100)
  assert block.raws == whole.raws == lines + lines[:2] and offsets == whole_offsets
  assert offsets["a.jsonl"] == state_store.Offset(sum(len(x) + 1 for x in lines), 12)
  assert (block.line(12).file, block.line(12).line) == ("b.jsonl", 1)
  # A batch limit stops mid-file; the next read resumes right after it.
  first, after = source.read({}, 5)
  rest, _ = source.read(after, 100)
  assert first.raws + rest.raws == block.raws
  assert (rest.line(0).file, rest.line(0).line, rest.line(0).raw) == (
      "a.jsonl", 6, lines[5].decode())
