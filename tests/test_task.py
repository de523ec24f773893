from __future__ import annotations

import pytest

from camcap import ModelInfo, Task, TaskKind, UnsupportedTaskError


def test_task_constructors_build_the_kind_they_name():
    assert Task.caption("short") == Task(TaskKind.CAPTION, length="short")
    assert Task.query("what colour?").question == "what colour?"
    assert Task.detect("person").target == "person"
    assert Task.point("cup").kind is TaskKind.POINT


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Task(TaskKind.CAPTION, length="huge"), "expected one of: short, normal, long"),  # type: ignore[arg-type]
        (lambda: Task.query("   "), "non-empty question"),
        (lambda: Task.detect(""), "name of an object"),
    ],
)
def test_invalid_tasks_are_refused_with_a_reason(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_unsupported_task_error_names_the_supported_ones():
    info = ModelInfo(
        name="m", backend="b", device="cpu", dtype="float32", tasks=(TaskKind.CAPTION, TaskKind.QUERY), input_size=384
    )
    info.check_task(Task.query("why?"))
    with pytest.raises(UnsupportedTaskError, match=r"cannot do 'detect'; it supports: caption, query"):
        info.check_task(Task.detect("dog"))


def test_task_describe_is_readable():
    assert Task.caption("long").describe() == "caption (long)"
    assert Task.query("how many?").describe() == "query: how many?"
