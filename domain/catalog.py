"""The catalogue of event types: every module that defines events is listed here, so
that the schema command, the relay and the decoders see all of them."""

from __future__ import annotations

import importlib
from functools import cache

from domain.events import Event

#: Modules defining events. A new bounded context adds its events module here.
EVENT_MODULES: tuple[str, ...] = (
    "domain.events",
    "domain.registry",
    "domain.collections_events",
    "domain.credit_events",
)


@cache
def all_event_types() -> tuple[type[Event], ...]:
    for module in EVENT_MODULES:
        importlib.import_module(module)
    found: list[type[Event]] = []
    stack = [Event]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            stack.append(sub)
            if sub.__module__ in EVENT_MODULES and not sub.__name__.endswith("Event"):
                found.append(sub)
    return tuple(sorted(set(found), key=lambda c: (EVENT_MODULES.index(c.__module__), c.__name__)))


def public_event_types() -> tuple[type[Event], ...]:
    return tuple(cls for cls in all_event_types() if cls.public)


def event_type_named(name: str) -> type[Event]:
    for cls in all_event_types():
        if cls.__name__ == name:
            return cls
    raise KeyError(name)
