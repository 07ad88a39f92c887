"""LM functions from an instruction and a few examples: unary, keyword with a template, JSON output.

    .venv/bin/python examples/functions_basic.py

With OPENAI_API_KEY set it talks to OpenAI (or OPENAI_BASE_URL); without, it starts the deterministic fake server
from aioagents.testing so the example runs offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator

from aioagents.functions import Example, GptApiOptions, LmFunction, LmOutputCastingError, Message
from aioagents.testing._openai import FakeOpenAIServer


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[str | None]:
    """The base URL to use: None (OpenAI, from the environment) or a local fake with canned answers."""
    if os.environ.get("OPENAI_API_KEY"):
        yield None
        return
    async with FakeOpenAIServer() as srv:
        srv.add_rule("The battery died after an hour.", "negative")
        srv.add_rule("Premise: Tom bought a car.\nHypothesis: Tom owns a car.", "yes")
        srv.add_rule("Paris is at 30 degrees today.", '```json\n{"city": "Paris", "temp_c": 30}\n```')
        yield srv.base_url


async def main() -> None:
    async with endpoint() as base_url:
        sentiment = LmFunction.create(
            "Classify the sentiment of the review as positive, negative or neutral.",
            [Example("I love this phone!", "positive"), Example("Worst purchase ever.", "negative")],
            gpt_opts=GptApiOptions(temperature=0),
            base_url=base_url,
        )
        entail = LmFunction.create(
            "Does the premise entail the hypothesis? Answer yes or no.",
            [Example({"premise": "A cat sleeps.", "hypothesis": "An animal rests."}, "yes")],
            message_template="Premise: {premise}\nHypothesis: {hypothesis}",
            base_url=base_url,
        )
        weather = LmFunction.create(
            "Extract the city and the temperature in Celsius as JSON.",
            [Example("It is 21°C in Zürich.", {"city": "Zürich", "temp_c": 21})],
            strip_code_fence=True,  # chat models like to wrap JSON in a ```json fence
            base_url=base_url,
        )
        async with sentiment, entail, weather:
            print("sentiment:", await sentiment("The battery died after an hour."))
            print("entailment:", await entail(premise="Tom bought a car.", hypothesis="Tom owns a car."))
            try:
                print("weather:", json.dumps(await weather("Paris is at 30 degrees today.")))
            except LmOutputCastingError as exc:
                print("not JSON:", exc.llm_output)
            # The request body is slambda's layout; inspect it without sending anything:
            body = sentiment.build_request("Fine.", __extra_messages=[Message.user("Be strict.")])
            print("messages sent:", len(body["messages"]))


if __name__ == "__main__":
    asyncio.run(main())
