"""Patient IDs from file names.

Splits must be by patient, and the public CXR releases carry the patient only in the file name,
so the ID is parsed with configurable regular expressions. A name that matches none of them is
treated as its own patient and marked as such, so the loss of grouping is visible in the manifest
instead of silently mixing a patient's images across splits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

# Kaggle: IM-0115-0001.jpeg, NORMAL2-IM-1427-0001.jpeg, person1000_bacteria_2931.jpeg;
# Mendeley: NORMAL-1003233-0001.jpeg, BACTERIA-1008087-0001.jpeg, VIRUS-1009212-0001.jpeg.
DEFAULT_PATIENT_ID_PATTERNS: tuple[str, ...] = (
    r"^(?:NORMAL2-)?(?P<pid>IM-\d+)-\d+",
    r"^(?P<pid>person\d+)_(?:bacteria|virus)_\d+",
    r"^(?:NORMAL|BACTERIA|VIRUS)-(?P<pid>\d+)-\d+",
)


@dataclass(frozen=True)
class PatientId:
    """A parsed patient ID and how it was obtained ("pattern" or "stem")."""

    value: str
    source: str


class PatientIdParser:
    """Parse patient IDs with an ordered list of regexes; the first match wins."""

    def __init__(self, patterns: Sequence[str] = DEFAULT_PATIENT_ID_PATTERNS):
        compiled = []
        for pattern in patterns:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"data.patient_id_patterns: {pattern!r} is not a valid regular expression "
                    f"({exc}); fix it in your config file"
                ) from exc
            if "pid" not in regex.groupindex:
                raise ValueError(
                    f"data.patient_id_patterns: {pattern!r} has no named group 'pid'; write the "
                    "part that identifies the patient as (?P<pid>...)"
                )
            compiled.append(regex)
        self._patterns = tuple(compiled)

    def __call__(self, path: str | PurePath) -> PatientId:
        """Return the patient ID of a file, from its name without folders."""
        name = PurePath(path).name
        for regex in self._patterns:
            match = regex.search(name)
            if match and match.group("pid"):
                return PatientId(match.group("pid"), "pattern")
        return PatientId(PurePath(name).stem, "stem")
