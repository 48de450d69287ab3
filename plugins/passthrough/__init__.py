"""The ``passthrough`` plugin: republishes each decoded reading as state.

A minimal plugin for wiring checks, benchmarks of the core (routing, decoding, publishing) and as a
template for third-party plugins.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from gateway.messages import Event, InputMessage, Output, ReadingBatch, State, Summary
from gateway.plugin import Plugin, PluginContext, PluginOptions


class PassthroughOptions(PluginOptions):
    """Options of the ``passthrough`` plugin."""

    emit: str = Field(
        "state",
        title="What to publish per reading",
        description="`state`: the latest reading per source, retained; `event`: one QoS1 event per reading; "
        "`none`: only count.",
        pattern="^(state|event|none)$",
    )


class PassthroughPlugin(Plugin[PassthroughOptions]):
    """Republishes readings unchanged; counts them for the interval summary."""

    name = "passthrough"
    options_model = PassthroughOptions
    input_kind = "readings"

    def __init__(self, options: PassthroughOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self._count = 0

    def process(self, message: InputMessage) -> Iterable[Output]:
        assert isinstance(message, ReadingBatch)
        self._count += len(message.readings)
        if self.options.emit == "none":
            return []
        outputs: list[Output] = []
        for r in message.readings:
            data = {"source": r.source, "ts": r.ts, "values": dict(r.values)}
            if self.options.emit == "event":
                outputs.append(Event("reading", data, ts=r.ts))
            else:
                outputs.append(State(data, key=r.source))
        return outputs

    def summarize(self, start: float, end: float) -> Iterable[Output]:
        count, self._count = self._count, 0
        return [Summary({"readings": count}, start, end)]
