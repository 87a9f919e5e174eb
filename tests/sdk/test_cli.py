"""The `coremachine` CLI: parameter parsing, exit codes, and commands against the fake gateway."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from coremachine.common.v1 import common_pb2
from coremachine_sdk import (
    Conflict,
    CoreMachineError,
    InvalidParameters,
    JobNotFound,
    JobStatus,
    PermissionDenied,
    Timeout,
    Unauthorized,
    Unavailable,
)
from coremachine_sdk.cli import main
from coremachine_sdk.cli._outside import find_repository, find_server, poison_messages
from coremachine_sdk.cli._parser import (
    UsageError,
    exit_code_for,
    exit_code_for_job,
    parse_parameters,
)
from tests.sdk.fake_gateway import FakeGateway

JS = common_pb2.JobStatus
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Captured output is not a terminal: rich would wrap tables at 80 columns.
    monkeypatch.setenv("COLUMNS", "200")


# --- parsing and exit codes ------------------------------------------------------------------


def test_key_value_parameters_are_json_when_they_parse() -> None:
    assert parse_parameters(
        ["n=100", "message=hi", "flag=true", "items=[1,2]", 'obj={"a":1}', 'q="7"', "e=", "x=a=b"]
    ) == {
        "n": 100,
        "message": "hi",
        "flag": True,
        "items": [1, 2],
        "obj": {"a": 1},
        "q": "7",
        "e": "",
        "x": "a=b",
    }


@pytest.mark.parametrize("words", [["n"], ["=1"], ["n=1", "n=2"]])
def test_malformed_parameters_are_usage_errors(words: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_parameters(words)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("x"), 2),
        (InvalidParameters("x", field="n"), 2),
        (JobNotFound("x"), 3),
        (Unauthorized("x"), 4),
        (PermissionDenied("x"), 4),
        (Unavailable("x"), 5),
        (Timeout("x"), 5),
        (Conflict("x"), 1),
        (CoreMachineError("x"), 1),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code_for(error) == code


def test_exit_code_of_a_finished_job() -> None:
    assert exit_code_for_job(JobStatus.COMPLETED) == 0
    assert exit_code_for_job(JobStatus.COMPLETED_WITH_ERRORS) == 0
    assert exit_code_for_job(JobStatus.FAILED) == 1
    assert exit_code_for_job(JobStatus.CANCELLED) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "--limit", "0"])
    assert exited.value.code == 2
    assert main(["submit", "hello_world", "oops"]) == 2
    assert "not key=value" in capsys.readouterr().err


# --- commands against the fake gateway --------------------------------------------------------


def run(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    code = main(["--address", gateway.address, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def finish_when_submitted(gateway: FakeGateway, status: int, after_calls: str) -> threading.Thread:
    """Finishes the first job once the CLI has made the given call (no fixed sleep)."""

    def finish() -> None:
        gateway.wait_until(lambda s: bool(s.jobs) and after_calls in [c for c, _ in s.calls])
        job_id = gateway.call(lambda s: next(iter(s.jobs)), gateway.service)
        gateway.call(gateway.service.finish, job_id, status)

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_submit_wait_json_exits_0_when_the_job_completes(gateway, capsys) -> None:
    finisher = finish_when_submitted(gateway, JS.JOB_STATUS_COMPLETED, "WatchJob")
    code, out, _ = run(
        gateway, capsys, "submit", "hello_world", "n=3", "message=hi", "--wait", "--json"
    )
    finisher.join()
    assert code == 0
    job = json.loads(out)
    assert job["status"] == "completed" and job["parameters"] == {"n": 3, "message": "hi"}
    assert job["result"] == {"greetings": 2, "ratio": 0.5}


def test_submit_wait_with_progress_exits_1_when_the_job_fails(gateway, capsys) -> None:
    finisher = finish_when_submitted(gateway, JS.JOB_STATUS_FAILED, "GetJob")
    code, out, err = run(gateway, capsys, "submit", "hello_world", "n=2", "--wait")
    finisher.join()
    assert code == 1
    assert "failed" in out and "boom" in out
    assert "stage 1/2" in err  # the progress bar


def test_submit_without_wait_prints_the_job_id(gateway, capsys) -> None:
    code, out, err = run(gateway, capsys, "submit", "hello_world", "n=2")
    assert code == 0 and len(out.strip()) == 64 and "queued" in err


def test_wait_timeout_exits_5(gateway, capsys) -> None:
    code, _, err = run(
        gateway, capsys, "submit", "hello_world", "n=2", "--wait", "--timeout", "0.3"
    )
    assert code == 5 and "still queued" in err


def test_invalid_parameters_exit_2_and_name_the_field(gateway, capsys) -> None:
    code, _, err = run(gateway, capsys, "submit", "hello_world", "n=0")
    assert code == 2 and "field: n" in err


def test_status_of_an_unknown_job_exits_3(gateway, capsys) -> None:
    code, _, err = run(gateway, capsys, "status", "0" * 64)
    assert code == 3 and "not found" in err


def test_a_wrong_api_key_exits_4(gateway, capsys, monkeypatch) -> None:
    gateway.call(setattr, gateway.service, "api_key", "right")
    monkeypatch.setenv("COREMACHINE_API_KEY", "wrong")
    assert run(gateway, capsys, "jobs")[0] == 4
    code, out, _ = run(gateway, capsys, "jobs", "--api-key", "right", "--json")
    assert code == 0 and json.loads(out) == []


def test_an_unreachable_gateway_exits_5(capsys) -> None:
    assert main(["--address", "127.0.0.1:1", "status", "0" * 64]) == 5


def test_status_jobs_tasks_watch_cancel_resubmit_types(gateway, capsys) -> None:
    code, out, _ = run(gateway, capsys, "submit", "hello_world", "n=2", "--json")
    job_id = json.loads(out)["job_id"]

    code, out, _ = run(gateway, capsys, "status", job_id)
    assert code == 0 and job_id in out and "queued" in out
    code, out, _ = run(gateway, capsys, "status", job_id, "--json")
    assert json.loads(out)["stages"][0]["task_count"] == 2

    code, out, _ = run(gateway, capsys, "jobs", "--status", "queued", "--type", "hello_world")
    assert code == 0 and job_id[:16] in out
    code, out, _ = run(gateway, capsys, "--json", "tasks", job_id, "--stage", "1")
    assert [t["task_index"] for t in json.loads(out)] == [0, 1]
    code, out, _ = run(gateway, capsys, "tasks", job_id)
    assert code == 0 and "greet" in out

    code, out, _ = run(gateway, capsys, "cancel", job_id)
    assert code == 0 and "cancelled" in out
    code, out, _ = run(gateway, capsys, "watch", job_id, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["event_type"] for e in lines] == ["job_created", "job_cancelled"]
    code, out, _ = run(gateway, capsys, "watch", job_id, "--after-seq", "1")
    assert "job_cancelled" in out and "job_created" not in out

    code, out, _ = run(gateway, capsys, "resubmit", job_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "processing"
    code, out, _ = run(gateway, capsys, "types")
    assert code == 0 and "hello_world" in out and "greet → reply" in out


# --- poison (HTTP) and up ---------------------------------------------------------------------


@pytest.fixture
def poison_http() -> Iterator[tuple[str, list[dict]]]:
    """A stand-in for the gateway's HTTP poison route; records the headers it got."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            if self.headers.get("Authorization") != "Bearer k":
                body, status = {"error": "Unauthenticated", "message": "bad key"}, 401
            else:
                message = {
                    "queue": "tasks",
                    "sequence": "7",
                    "reason": "undecodable",
                    "delivery_count": 1,
                    "job_id": "ab" * 32,
                    "task_id": None,
                }
                body = {
                    "queues": {
                        "jobs": {"count": 0, "messages": []},
                        "tasks": {"count": 1, "messages": [message]},
                    }
                }
                status = 200
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_poison_lists_dead_letters_over_http(poison_http, capsys) -> None:
    url, seen = poison_http
    assert main(["poison", "--http", url, "--api-key", "k", "--queue", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "undecodable" in out and "tasks" in out
    assert seen[-1] == {"path": "/api/monitor/poison?queue=tasks", "authorization": "Bearer k"}

    assert main(["poison", "--http", url, "--api-key", "k", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["queues"]["tasks"]["messages"][0]["sequence"] == "7"
    assert main(["poison", "--http", url, "--api-key", "nope"]) == 4
    assert main(["poison", "--http", "http://127.0.0.1:1"]) == 5


def test_up_needs_a_server(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("COREMACHINE_REPO", raising=False)
    monkeypatch.chdir(tmp_path)
    # Neither an installed server (beside the interpreter or on PATH) nor a checkout.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["up"]) == 2
    assert "coremachine-server" in capsys.readouterr().err


def test_up_prefers_the_installed_server(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    (tmp_path / "coremachine-server").write_text("")
    assert find_server(tmp_path, None) == [str(tmp_path / "coremachine-server"), "up"]


def test_up_finds_the_checkout_from_a_subdirectory(tmp_path: Path) -> None:
    assert find_repository(ROOT / "coremachine" / "services" / "state", None) == ROOT
    assert find_repository(tmp_path, str(ROOT)) == ROOT
    assert find_repository(tmp_path, None) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"queues": {"jobs": {"count": 1, "messages": [{"sequence": "1"}]}}}, ["1"]),
        ({"messages": [{"sequence": "2"}]}, ["2"]),
        ([{"sequence": "3"}], ["3"]),
        ({"something": "else"}, None),
    ],
)
def test_poison_response_shapes(body, expected) -> None:
    found = poison_messages(body)
    assert (None if found is None else [m["sequence"] for m in found]) == expected
