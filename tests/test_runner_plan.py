"""The runner's plan: teachers before their students, each run once, finished runs skipped."""

from __future__ import annotations

from benchmark.recipes import Catalog, Context, expand, select
from benchmark.runner.local import ordered, plan
from benchmark.runner.tracking import RunRecord


class FakeTracker:
    def __init__(self, records):
        self.records = records

    def find(self, hashes):
        return {h: self.records[h] for h in hashes if h in self.records}


def _table4_specs():
    c = Catalog()
    return expand(c, select(c, "dm2/table4"), Context(profile="smoke", datasets=["cub200"]))


def test_teachers_come_first_and_are_made_once():
    specs = _table4_specs()
    runs = ordered(list(reversed(specs)))  # even when handed students first
    position = {s.hash: i for i, s in enumerate(runs)}
    assert len(position) == len(runs), "a run appears twice"
    needed = {s.hash for s in specs} | {s.teacher.hash for s in specs if s.teacher is not None}
    assert set(position) == needed, "a run or a teacher is missing"
    students = [s for s in runs if s.teacher is not None]
    assert len(students) >= 6  # RKD-DA, DarkRank, Compact x (2x, 4x) + DM² -> RKD-DA
    for s in students:
        assert position[s.teacher.hash] < position[s.hash]
    teachers = {s.teacher.hash for s in students}
    # RKD-DA, DarkRank and Compact share one 4x teacher and one 2x teacher;
    # DM² -> RKD-DA has the two DM² cohorts as teachers.
    assert len(teachers) == 4


def test_plan_skips_finished_and_resumes_unfinished():
    specs = _table4_specs()
    runs = ordered(specs)
    done, broken = runs[0].hash, runs[1].hash
    tracker = FakeTracker({done: RunRecord("r1", "FINISHED", done), broken: RunRecord("r2", "RUNNING", broken)})
    states = {p.spec.hash: p.state for p in plan(specs, tracker)}
    assert states[done] == "finished" and states[broken] == "resume"
    assert sum(v == "new" for v in states.values()) == len(runs) - 2
