"""Tests of the line-robust reader (features/datasets/line_reader.py) on hand-made files."""

import pytest

from features.datasets import line_reader

CSV = line_reader.Format(sep=",", quoted=True)
TSV = line_reader.Format(sep="\t", quoted=False)


def _read(tmp_path, data: bytes, fmt=CSV, required=()):
  path = tmp_path / "f.txt"
  path.write_bytes(data)
  return line_reader.read(str(path), fmt, required)


def _bad(parsed):
  return list(zip(parsed.bad["line"], parsed.bad["reason"]))


def test_quoted_separators_and_doubled_quotes_are_one_field(tmp_path):
  parsed = _read(tmp_path, b'a,b,c\n1,"x, y",3\n2,"say ""hi""",4\n3,"open,5\n')
  assert parsed.frame["b"].tolist() == ["x, y", 'say "hi"']
  assert parsed.frame[line_reader.LINE].tolist() == [2, 3]
  assert _bad(parsed) == [(4, "unbalanced quote")]


def test_a_quote_inside_an_unquoted_field_is_quarantined(tmp_path):
  # The C parser reads such quotes as text; the vectorised count would not.
  parsed = _read(tmp_path, b'a,b\nab"c,d"e\n"x"y,1\nx"",1\n')
  assert _bad(parsed) == [(2, "quote inside a field at column 3"),
                          (3, "quote inside a field at column 3")]
  assert parsed.frame["a"].tolist() == ['x""']


def test_quotes_are_text_when_the_format_is_not_quoted(tmp_path):
  parsed = _read(tmp_path, b'id\tname\n1686\t"Weird Al" Yankovic\n7\t"half\n', TSV)
  assert parsed.frame["name"].tolist() == ['"Weird Al" Yankovic', '"half']
  assert _bad(parsed) == []


def test_a_tab_inside_quotes_is_text_in_a_quoted_tsv(tmp_path):
  fmt = line_reader.Format(sep="\t", quoted=True)
  parsed = _read(tmp_path, b'ID\tTITLE\tLICENSE\r\n1\t"Mix)\t by X "\tcc\r\n', fmt)
  assert parsed.frame.iloc[0][["ID", "TITLE", "LICENSE"]].tolist() == ["1", "Mix)\t by X ", "cc"]


def test_field_counts_control_bytes_and_blank_lines(tmp_path):
  data = (b"a,b,c\r\n1,2,3\r\n\r\n4,5\r\n6,7,8,9\r\n10,1\x002,3\r\n"
          b"11,1\r2,3\r\n,,\r\n12,13,14")          # no newline at the end
  parsed = _read(tmp_path, data)
  assert _bad(parsed) == [(4, "expected 3 fields, saw 2"), (5, "expected 3 fields, saw 4"),
                          (6, "control byte (NUL or CR) at column 5"),
                          (7, "control byte (NUL or CR) at column 5")]
  assert parsed.frame[line_reader.LINE].tolist() == [2, 8, 9]
  assert parsed.frame["a"].isna().tolist() == [False, True, False]
  assert parsed.frame["c"].tolist()[-1] == "14"
  assert parsed.lines_read == 7                   # the blank line 3 is not a data line
  assert parsed.file.raw(6) == "10,1\x002,3" and parsed.file.raw(9) == "12,13,14"


def test_undecodable_lines_keep_their_bytes_as_escapes(tmp_path):
  parsed = _read(tmp_path, "a,b\n1,caf\u00e9\n2,caf".encode() + b"\xe9\n3,\xff\xfe\n")
  assert parsed.frame["b"].tolist() == ["caf\u00e9"]
  assert _bad(parsed) == [(3, "not utf-8: byte 0xe9 at column 6"),
                          (4, "not utf-8: byte 0xff at column 3")]
  assert [parsed.file.raw(n) for n in (3, 4)] == ["2,caf\\xe9", "3,\\xff\\xfe"]


def test_decoding_errors_found_chunk_by_chunk(tmp_path, monkeypatch):
  monkeypatch.setattr(line_reader, "_DECODE_CHUNK", 16)
  lines = [f"{i},caf\u00e9".encode() for i in range(20)]
  lines[3] = b"3,caf\xe9"
  lines[17] = b"17,\xc3"
  parsed = _read(tmp_path, b"a,b\n" + b"\n".join(lines) + b"\n")
  assert [line for line, _ in _bad(parsed)] == [5, 19]
  assert len(parsed.frame) == 18


def test_latin1_always_decodes(tmp_path):
  fmt = line_reader.Format(sep="\t", quoted=False, encoding="latin-1")
  parsed = _read(tmp_path, "tagID\ttagValue\n1\tfu\u00dfball\n".encode("latin-1"), fmt)
  assert parsed.frame["tagValue"].tolist() == ["fu\u00dfball"] and _bad(parsed) == []


def test_repeated_last_column_becomes_a_list(tmp_path):
  fmt = line_reader.Format(sep="\t", quoted=False, repeated_last=True)
  parsed = _read(tmp_path, b"ID\tD\tTAGS\r\nx\t1\tg1\t g2 \t\r\ny\t2\r\nz\r\nw\t3\tg3\r\n", fmt)
  assert parsed.frame["TAGS"].tolist() == [["g1", "g2"], [], ["g3"]]
  assert parsed.frame["D"].tolist() == ["1", "2", "3"]
  assert list(parsed.frame.columns) == ["ID", "D", "TAGS", line_reader.FILE, line_reader.LINE]
  assert _bad(parsed) == [(4, "expected at least 2 fields, saw 1")]


def test_a_file_without_good_lines_gives_an_empty_frame(tmp_path):
  parsed = _read(tmp_path, b"a,b\n\xff,1\n")
  assert list(parsed.frame.columns) == ["a", "b", line_reader.FILE, line_reader.LINE]
  assert len(parsed.frame) == 0 and parsed.lines_read == 1


def test_unreadable_layouts_raise(tmp_path):
  with pytest.raises(ValueError, match="header lacks \\['c'\\]"):
    _read(tmp_path, b"a,b\n1,2\n", required=("a", "c"))
  with pytest.raises(ValueError, match="header line 1 is not utf-8"):
    _read(tmp_path, b"a,\xffb\n1,2\n")
  with pytest.raises(ValueError, match="empty file"):
    _read(tmp_path, b"\n\n")
  with pytest.raises(ValueError, match="sep must be one ASCII character"):
    line_reader.Format(sep=";;")
  with pytest.raises(ValueError, match="repeated_last needs an unquoted format"):
    line_reader.Format(sep="\t", quoted=True, repeated_last=True)
