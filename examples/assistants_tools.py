"""The async client: a function-calling assistant answered by a local function, streamed, then a cancelled run.

    .venv/bin/python examples/assistants_tools.py

Without APPBUILDER_TOKEN it runs against the local fake, scripted to ask for the weather tool and to hang on the
second run until it is cancelled.
"""

from __future__ import annotations

import asyncio
import os

from aioagents.assistants import AssistantsClient, MessageEvent, RunBegin, RunEnd, Tool, ToolCallsEvent
from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

WEATHER_TOOL = Tool.from_function(
    "get_cur_whether",
    "查询某地当前天气",
    {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
)


async def get_cur_whether(location: str, unit: str = "摄氏度") -> str:
    """The local tool the assistant calls."""
    return f"{location}: 晴, 25 {unit}"


async def demo(client: AssistantsClient) -> None:
    assistant = await client.assistants.create(
        name="weather_assistant", instructions="用工具回答天气问题", tools=[WEATHER_TOOL]
    )
    thread = await client.threads.create(messages=["北京今天天气怎么样?"])

    # Streamed: tool calls are answered while the stream stays open; the answer text arrives in pieces.
    async for event in client.threads.runs.stream_with_tools(
        assistant_id=assistant.id, thread_id=thread.id, tools={"get_cur_whether": get_cur_whether}
    ):
        if isinstance(event, ToolCallsEvent):
            print("tool calls:", [(c.function.name, c.function.arguments) for c in event.tool_calls if c.function])
        elif isinstance(event, MessageEvent):
            print("answer piece:", event.text)
        elif isinstance(event, RunEnd):
            print("run ended:", event.status)

    # Cancelled mid-stream.
    await client.threads.messages.create(thread.id, "再详细说说")
    run_id = ""
    async with client.threads.runs.stream(assistant_id=assistant.id, thread_id=thread.id) as events:
        async for event in events:
            if isinstance(event, RunBegin):
                run_id = event.run_id or ""
            elif isinstance(event, MessageEvent):
                await client.threads.runs.cancel(thread.id, run_id)
            elif isinstance(event, RunEnd):
                assert event.run is not None
                print("run ended:", event.status, "cancelled_at:", event.run.cancelled_at)


async def main() -> None:
    if os.environ.get("APPBUILDER_TOKEN"):
        async with AssistantsClient() as client:
            await demo(client)
        return
    async with FakeAppBuilderServer() as server:
        weather = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})
        server.script(RunScript(tool_calls=[weather]), RunScript(hang=True))
        async with AssistantsClient(token=server.token, base_url=server.url) as client:
            await demo(client)


if __name__ == "__main__":
    asyncio.run(main())
