"""Testing your own job types: a handler's context, and the real services.

from coremachine.testing import task_context, CoreMachineStack

def test_my_handler():
    assert my_handler({"index": 2}, task_context()) == {...}

def test_my_job_end_to_end():
    with CoreMachineStack(apps="mypackage.jobs:app") as cm:
        job = cm.run("my_job", n=3)
        assert job.status == "completed" and job.result == {...}
"""

from coremachine.testing._context import RecordingRuntime, task_context
from coremachine.testing._stack import CoreMachineStack

__all__ = ["CoreMachineStack", "RecordingRuntime", "task_context"]
