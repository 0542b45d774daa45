"""Schedulers: the interface, a thread pool and a serial runner."""

from __future__ import annotations

from .base import Scheduler
from .serial import SerialScheduler
from .threads import ThreadPoolScheduler

__all__ = ["Scheduler", "SerialScheduler", "ThreadPoolScheduler"]
