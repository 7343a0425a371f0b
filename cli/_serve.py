"""``durable serve``: the HTTP API and the web view of runs, over the command's client."""

from __future__ import annotations

import argparse

import durable_agents.agents.chat  # noqa: F401  (registers the chat-turn agent the chat route starts)
from durable import DurableClient
from durable.chat import ChatTurnEngine
from durable_agents import worker
from durable_agents.adapters.http import ChatTurnRequest, ServerSettings
from durable_agents.adapters.http._serve import bind, http_server, serving_message
from durable_agents.adapters.settings import Settings
from durable_agents.agents.chat import model_reply

from ._clients import open_target
from ._common import EXIT_OK, UsageError

__all__ = ["chat_engine", "cmd_serve", "server_settings"]


def chat_engine(client: DurableClient) -> ChatTurnEngine[ChatTurnRequest]:
    """Chat turns answered by the model a request names, on the workers' ``DURABLE_MODELS``."""
    return ChatTurnEngine(
        client,
        produce=lambda identity, request: model_reply(
            request.model, request.messages, options=request.options
        ),
    )


def server_settings(args: argparse.Namespace, settings: Settings) -> ServerSettings:
    """The server's settings: the environment's, ``--host`` and ``--port`` over them."""
    given = {"host": args.host, "port": args.port}
    try:
        return ServerSettings(
            **{
                **settings.server.model_dump(),
                **{name: value for name, value in given.items() if value is not None},
                "temporal_ui": None if args.local else settings.temporal.ui_link(),
            }
        )
    except ValueError as exc:
        raise UsageError(str(exc).replace("DURABLE_API_PORT", "--port")) from None


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    # The agents are imported so that a start names them with their input types,
    # and so that with --local the runs this server starts execute here.
    worker.import_agents(settings.worker.agent_modules)
    serving = server_settings(args, settings)
    refusal = serving.refusal()
    if refusal is not None:
        raise UsageError(refusal)
    try:
        listening = bind(serving)
    except OSError as exc:
        raise UsageError(str(exc)) from None
    async with open_target(args, settings) as target:
        server = http_server(target.client, serving, chat=chat_engine(target.client))
        print(f"{serving_message(serving, listening)}; runs {target.where}", flush=True)
        await server.serve(sockets=[listening])
    return EXIT_OK
