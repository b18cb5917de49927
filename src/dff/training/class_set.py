"""The classes a training run learns: the preset's, the annotation file's own (`auto`), or a list given by name.

The rule (`dff train --classes`, docs/training.md):

- not given: the reference classes (the preset's, or the resumed checkpoint's) when every category name of the
  annotation file is among them (ImageNet VID trains exactly as before), else the file's own (`auto`);
- `auto`: the file's category names in its category order;
- `a,b,c`: those names in that order; every category that has a box in the file must be among them.

The chosen names become `cfg.class_names` (`dataclasses.replace`), which sizes the class-dependent layers and
travels in every checkpoint the run writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from dff.data.cocovid import CocoVID
from dff.errors import DatasetError, InputError

AUTO = "auto"
SHOWN = 5  # names an error lists before "..."


def parse_classes(text: str) -> str | tuple[str, ...]:
    """`auto` or 'a,b,c' -> AUTO or the names; InputError for an empty or repeated name."""
    if text.strip() == AUTO:
        return AUTO
    names = tuple(n.strip() for n in text.split(","))
    if any(not n for n in names):
        raise InputError(f"--classes {text!r}: an empty class name (give 'auto' or names separated by commas)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--classes {text!r}: class name(s) given twice: {', '.join(repeated)}")
    return names


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def file_classes(coco: CocoVID) -> tuple[str, ...]:
    """The annotation file's category names in its category order; DatasetError if unnamed, repeated or none."""
    names = [c.get("name") for c in coco.categories]
    if not names:
        raise DatasetError(f"{coco.path}: no categories, so no classes to train")
    unnamed = [c["id"] for c in coco.categories if not isinstance(c.get("name"), str) or not c.get("name")]
    if unnamed:
        raise DatasetError(f"{coco.path}: category id {unnamed[0]!r} has no name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"{coco.path}: two categories named {repeated[0]!r}")
    return tuple(names)


def annotated_classes(coco: CocoVID) -> tuple[str, ...]:
    """The names of the categories that have at least one box, in category order."""
    used = {a["category_id"] for a in coco.all_annotations()}
    return tuple(c["name"] for c in coco.categories if c["id"] in used)


def resolve_classes(
    coco: CocoVID, reference: Sequence[str], classes: str | Sequence[str] | None = None
) -> tuple[str, ...]:
    """The class names to train on `coco` by the rule above; `reference` are the preset's (or resumed) classes,
    `classes` is None, AUTO or the names. DatasetError names the file and the categories a list leaves out."""
    own = file_classes(coco)
    if classes is None:
        return tuple(reference) if set(own) <= set(reference) else own
    if classes == AUTO:
        return own
    names = tuple(classes)
    uncovered = [n for n in annotated_classes(coco) if n not in names]
    if uncovered:
        raise DatasetError(
            f"{coco.path}: --classes {','.join(names)} leaves out {len(uncovered)} annotated categor"
            f"{'y' if len(uncovered) == 1 else 'ies'}: {_shown(uncovered)} (add them, or use --classes auto)"
        )
    return names
