from golora import conditions as c
from golora import naming


def test_set_condition_adds_then_updates_in_place():
    conds = c.set_condition(None, "Accepted", "True", "Valid", "ok", 1, now="T1")
    assert conds == [{"type": "Accepted", "status": "True", "reason": "Valid", "message": "ok",
                      "lastTransitionTime": "T1", "observedGeneration": 1}]
    conds = c.set_condition(conds, "Ready", "False", "Waiting", "", 1, now="T1")
    assert [x["type"] for x in conds] == ["Accepted", "Ready"]


def test_last_transition_time_changes_only_when_status_changes():
    conds = c.set_condition(None, "Accepted", "True", "Valid", "ok", 1, now="T1")
    same = c.set_condition(conds, "Accepted", "True", "StillValid", "ok too", 2, now="T2")
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["reason"] == "StillValid" and same[0]["observedGeneration"] == 2
    flipped = c.set_condition(same, "Accepted", "False", "InvalidSpec", "bad", 3, now="T3")
    assert flipped[0]["lastTransitionTime"] == "T3"
    assert conds[0]["reason"] == "Valid"  # input not mutated


def test_set_condition_refuses_bad_status():
    import pytest

    with pytest.raises(ValueError):
        c.set_condition(None, "Accepted", "yes", "Valid")


def test_job_names_are_deterministic_and_valid():
    a = naming.job_name("gds", "stdlib", 3, 1)
    assert a == "stdlib-gds-g3-a1"
    assert naming.job_name("gds", "stdlib", 3, 1) == a
    long = naming.job_name("lt", "x" * 80, 12, 2)
    assert len(long) <= 63 and long.endswith("-lt-g12-a2")
    assert naming.job_name("lt", "x" * 80 + "y", 12, 2) != long  # hash keeps them apart


def test_owner_labels():
    labels = naming.owner_labels("GoDataset", "stdlib", 2, 1)
    assert labels[naming.LABEL_KIND] == "GoDataset"
    assert labels[naming.LABEL_GENERATION] == "2" and labels[naming.LABEL_ATTEMPT] == "1"
