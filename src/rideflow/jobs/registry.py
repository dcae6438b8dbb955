"""Tasks: Python functions registered by name, each with a pydantic model for its payload."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from rideflow.config import Settings
from rideflow.errors import Unprocessable
from rideflow.redis.scripts import Scripts

if TYPE_CHECKING:
    from rideflow.record.db import Record

Handler = Callable[[Any, "JobContext"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running task may use: its job, the attempt (the job's fencing token), Redis, the
    record."""

    job_id: str
    attempt: int
    redis: Redis
    scripts: Scripts
    settings: Settings
    log: logging.Logger
    record: Record | None = None
    """The worker's handle on the record (SQL), for tasks that write it."""


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    payload: type[BaseModel]
    handler: Handler
    description: str


class Registry:
    """Known tasks by name. Handlers must be idempotent by job id: a job whose worker died is run
    again (its result is recorded once)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def task(self, name: str, payload: type[BaseModel]) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine function as task `name`."""

        def register(handler: Handler) -> Handler:
            if name in self._tasks:
                raise ValueError(f"task {name!r} is already registered")
            doc = (handler.__doc__ or "").strip().splitlines()
            self._tasks[name] = Task(name, payload, handler, doc[0] if doc else "")
            return handler

        return register

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: str) -> bool:
        return name in self._tasks

    def get(self, name: str) -> Task:
        """The task, or a 422 that lists the known ones."""
        task = self._tasks.get(name)
        if task is None:
            raise Unprocessable(
                f"unknown task {name!r}; known tasks: {', '.join(self.names)}", field="task"
            )
        return task

    def validate(self, name: str, payload: dict[str, Any]) -> BaseModel:
        """The payload parsed by the task's model; a bad one is a 422 naming the field."""
        task = self.get(name)
        try:
            return task.payload.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("payload", *first["loc"]))
            raise Unprocessable(f"{first['msg']}", field=where) from exc

    def load(self, modules: list[str]) -> None:
        """Import modules that register tasks on `REGISTRY` (`RIDEFLOW_JOB_MODULES`)."""
        for module in modules:
            importlib.import_module(module)


REGISTRY = Registry()
"""The process-wide registry; the built-in tasks are in `rideflow.jobs.tasks`."""
