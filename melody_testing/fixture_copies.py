"""Copies of committed data excerpts with extra lines appended, for malformed-input tests.

This module owns only the copying: a test copies an excerpt folder (e.g.
``tests/fixtures/hetrec``) and appends its own lines to some files, byte for byte, so
that the original fixture stays untouched.
"""

import os
import shutil
from typing import Dict


def copy_with_appended(src: str, dst: str, appended: Dict[str, bytes]) -> str:
  """Copies folder ``src`` to ``dst`` and appends bytes to named files of the copy.

  Args:
    src: the folder to copy.
    dst: where the copy goes (must not exist).
    appended: file name -> bytes written at its end.

  Returns:
    ``dst``.
  """
  shutil.copytree(src, dst)
  for name, data in appended.items():
    with open(os.path.join(dst, name), "ab") as f:
      f.write(data)
  return dst
