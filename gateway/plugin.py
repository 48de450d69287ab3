"""The plugin contract: what a pipeline plugin is, what it gets, and how it is found.

A plugin is a class registered under a name in the ``edge_gateway.plugins`` entry-point group. The
built-in plugins in ``plugins/`` register exactly the way third-party ones do (see ``pyproject.toml``).
The gateway builds one instance per configured pipeline: ``options`` validated by the plugin's own
pydantic model, and a :class:`PluginContext` giving it what the core owns (models, clock, logger, a
persistent state store, a way to emit outputs outside ``process``).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from gateway.messages import InputKind, InputMessage, Output

if TYPE_CHECKING:
    from gateway.statestore import StateStore

ENTRY_POINT_GROUP = "edge_gateway.plugins"


class PluginOptions(BaseModel):
    """Base for plugin option models: unknown keys are errors, so typos fail at start-up."""

    model_config = ConfigDict(extra="forbid")


class ModelInfoLike(Protocol):
    """What the publisher needs to stamp events with the model that produced them."""

    name: str
    version: str


class ModelProvider(Protocol):
    """Gives plugins the models declared in the config's ``models`` section, loaded by the engine."""

    def get(self, name: str) -> Any: ...


@dataclass
class PluginContext:
    """What the core hands a plugin when it is built."""

    pipeline: str
    gateway_id: str
    logger: logging.Logger
    clock: Callable[[], float]
    data_dir: Path
    models: ModelProvider
    state: StateStore
    emit: Callable[[Output], None] = field(default=lambda _o: None)
    submit: Callable[[InputMessage], None] = field(default=lambda _m: None)
    config_dir: Path = field(default_factory=Path.cwd)


O = TypeVar("O", bound=PluginOptions)


class Plugin(ABC, Generic[O]):
    """Base class of pipeline plugins.

    Subclasses set ``name``, ``options_model`` and ``input_kind`` (which decoder the core runs and
    which queue policy applies by default), and implement :meth:`process`.
    """

    name: ClassVar[str]
    options_model: ClassVar[type[PluginOptions]] = PluginOptions
    input_kind: ClassVar[InputKind] = "readings"

    def __init__(self, options: O, context: PluginContext) -> None:
        self.options = options
        self.context = context

    @abstractmethod
    def process(self, message: InputMessage) -> Iterable[Output]:
        """Handle one decoded input message; return (or yield) the outputs it produces."""

    def summarize(self, start: float, end: float) -> Iterable[Output]:
        """Outputs summarising the interval ``[start, end)``; called by the scheduler."""
        return ()

    def model_info(self) -> ModelInfoLike | None:
        """The model whose results this plugin publishes, stamped on its events."""
        return None

    def start(self) -> None:
        """Called once the pipeline's worker runs (start sources, timers)."""

    def close(self) -> None:
        """Release resources and persist state; called once at shutdown."""


class UnknownPluginError(LookupError):
    """No plugin is registered under the requested name."""


@cache
def registered_plugins() -> Mapping[str, type[Plugin[Any]]]:
    """All plugins in the entry-point group, by name."""
    found: dict[str, type[Plugin[Any]]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as e:  # a broken third-party plugin must not take the others down
            logging.getLogger(__name__).error("plugin %s (%s) cannot be loaded: %s", ep.name, ep.value, e)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            logging.getLogger(__name__).warning("entry point %s is not a Plugin subclass; ignored", ep.value)
            continue
        found[ep.name] = cls
    return found


def plugin_class(name: str) -> type[Plugin[Any]]:
    """The plugin class registered under ``name``."""
    plugins = registered_plugins()
    try:
        return plugins[name]
    except KeyError:
        known = ", ".join(sorted(plugins)) or "none"
        raise UnknownPluginError(f"unknown plugin {name!r} (registered: {known})") from None
