"""Request and response bodies of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rideflow.schemas import Body

Priority = Literal["high", "default", "low"]
JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
TASK_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"
PAYLOAD_MAX_DEPTH = 32
INT_RANGE = (-(2**63), 2**64 - 1)
"""What JSON libraries (orjson, Redis' cjson, most clients) can carry as an integer."""


def check_plain_json(value: object, where: str = "payload") -> None:
    """Refuse what could not be stored, fingerprinted and read back as the same JSON: integers
    beyond 64 bits and nesting deeper than `PAYLOAD_MAX_DEPTH`. Walked without recursion, as the
    body may nest as deep as its size allows."""
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= PAYLOAD_MAX_DEPTH:
                raise ValueError(f"{path} nests deeper than {PAYLOAD_MAX_DEPTH} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, f"{path}.{k}", depth + 1) for k, v in pairs)
        elif isinstance(item, int) and not INT_RANGE[0] <= item <= INT_RANGE[1]:
            raise ValueError(f"{path} is an integer beyond 64 bits")


class JobSubmit(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "task": "send_email",
                    "payload": {"to": "rider@example.com", "subject": "Your ride"},
                    "priority": "high",
                }
            ]
        },
    )

    task: str = Field(pattern=TASK_PATTERN, description="A registered task's name")
    payload: dict[str, Any] = Field(default_factory=dict, description="Checked by the task")
    priority: Priority = "default"
    delay: float | None = Field(default=None, ge=0, le=30 * 86_400, description="Seconds to wait")
    run_at: datetime | None = Field(default=None, description="When to run (UTC)")
    max_retries: int = Field(default=3, ge=0, le=25)
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="Seconds an attempt may run; the default when absent",
    )

    @field_validator("payload")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_plain_json(value)
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> JobSubmit:
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give either delay or run_at, not both")
        return self


class JobCreated(BaseModel):
    job_id: str
    status: JobStatus = "pending"


class JobAttempt(BaseModel):
    attempt: int
    worker: str | None = None
    started_at: datetime
    finished_at: datetime
    outcome: Literal["ok", "error", "timeout"]
    error: str | None = None


class JobView(BaseModel):
    job_id: str
    task: str
    status: JobStatus
    priority: Priority
    payload: dict[str, Any]
    retries: int = Field(description="Failed attempts that were retried")
    max_retries: int
    timeout: float
    result: Any = None
    error: str | None = Field(default=None, description="The last attempt's error")
    attempts: list[JobAttempt] = Field(description="Finished attempts, in order")
    created_at: datetime
    run_at: datetime = Field(description="When it is due (again, after a failure)")
    started_at: datetime | None = Field(default=None, description="When the last attempt began")
    finished_at: datetime | None = None
    submitted_by: str | None = Field(
        default=None, description="The submitter's id; null for RideFlow's own jobs"
    )


class JobList(BaseModel):
    jobs: list[JobView]
    next_before: float | None = Field(
        default=None, description="Pass as `before` for the next page (ms, exclusive)"
    )


class DeadLetter(BaseModel):
    entry_id: str
    job_id: str
    task: str
    error: str
    at: datetime


class DeadLetters(BaseModel):
    dead: list[DeadLetter]


class TaskStats(BaseModel):
    submitted: int
    completed: int
    failed: int
    retried: int
    throughput_per_s: float = Field(description="Completions per second over the last minute")
    run_ms_p50: float | None = None
    run_ms_p99: float | None = None
    wait_ms_p50: float | None = Field(default=None, description="Due to started")
    wait_ms_p99: float | None = None


class JobStats(BaseModel):
    counts: dict[str, int] = Field(description="Jobs per status (finished ones while retained)")
    tasks: dict[str, TaskStats]
    known_tasks: list[str]
