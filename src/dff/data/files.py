"""Reading an annotation file (JSON or XML) with every failure as one DatasetError line naming the file."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from dff.errors import DatasetError


def read_json(path: Path, what: str = "annotation JSON") -> Any:
    """The parsed JSON of `path`; DatasetError when it is missing, unreadable or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} is missing") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror or e})") from None


def read_xml(path: Path, what: str) -> ET.Element:
    """The root element of the XML file `path`; DatasetError when it is missing, unreadable or not XML."""
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} is missing") from None
    except ET.ParseError as e:
        raise DatasetError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror or e})") from None
