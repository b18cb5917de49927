"""Reading an annotation file (JSON, XML or plain text) with every failure as one DatasetError line naming the file.

Missing, unreadable (a folder, no permission), not UTF-8 (text and JSON; XML follows its own declaration),
malformed or nested past the parser's limits: each is one line, never a traceback.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from dff.errors import DatasetError


def _not_utf8(path: Path, e: UnicodeDecodeError) -> DatasetError:
    return DatasetError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})")


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path` (a leading byte-order mark dropped); DatasetError when it is missing, unreadable
    or not UTF-8."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} is missing") from None
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror or e})") from None


def read_json(path: Path, what: str = "annotation JSON") -> Any:
    """The parsed JSON of `path`; DatasetError when it is missing, unreadable, not UTF-8 or not JSON."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON ({e})") from None
    except RecursionError:
        raise DatasetError(f"{path}: malformed JSON (nested too deeply)") from None


def read_xml(path: Path, what: str) -> ET.Element:
    """The root element of the XML file `path`; DatasetError when it is missing, unreadable or not XML."""
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} is missing") from None
    except ET.ParseError as e:
        raise DatasetError(f"{path}: malformed XML ({e})") from None
    except LookupError as e:  # an encoding Python does not know, named in the XML declaration
        raise DatasetError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror or e})") from None
