"""Patient IDs parsed from the file names of the public CXR releases."""

import pytest

from cxrlib.data.patients import PatientIdParser


@pytest.mark.parametrize(
    ("name", "pid"),
    [
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "IM-1427"),
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("NORMAL-1003233-0001.jpeg", "1003233"),
        ("BACTERIA-1008087-0001.jpeg", "1008087"),
        ("VIRUS-1009212-0002.jpeg", "1009212"),
        ("train/NORMAL/IM-0001-0001.jpeg", "IM-0001"),
    ],
)
def test_default_patterns_parse_kaggle_and_mendeley_names(name: str, pid: str) -> None:
    parsed = PatientIdParser()(name)
    assert parsed.value == pid
    assert parsed.source == "pattern"


def test_unmatched_name_is_its_own_patient_and_marked() -> None:
    parsed = PatientIdParser()("scan_0042.png")
    assert parsed.value == "scan_0042"
    assert parsed.source == "stem"


def test_first_matching_pattern_wins() -> None:
    parser = PatientIdParser([r"^(?P<pid>[a-z]+)_", r"^(?P<pid>[a-z]+\d)"])
    assert parser("abc1_x.png").value == "abc1"  # first pattern fails on the digit; second matches
    assert parser("abc_1.png").value == "abc"


@pytest.mark.parametrize(
    ("pattern", "message"), [(r"^(IM-\d+)", "no named group 'pid'"), (r"^(?P<pid>[", "not a valid")]
)
def test_bad_patterns_name_the_key_and_the_fix(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"data\.patient_id_patterns") as info:
        PatientIdParser([pattern])
    assert message in str(info.value)
