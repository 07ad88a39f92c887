"""slambda code, unchanged except for the import: blocking calls, the published reserved keywords.

    .venv/bin/python examples/functions_compat.py

Without OPENAI_API_KEY it points OPENAI_BASE_URL at the local fake (in a background thread, since these calls
block).
"""

from __future__ import annotations

import os

from aioagents.compat.slambda import Example, GptApiOptions, LmFunction, Message
from aioagents.testing._openai import FakeOpenAIServer


def demo() -> None:
    motivate_me = LmFunction.create(
        instruction="Write one short motivational sentence.",
        examples=[Example(output="Keep going, you are closer than you think.")],
        default_args="Motivate me.",
        strict_no_args=True,
    )
    print(motivate_me())

    fix_grammar = LmFunction.create(
        "Fix the grammar.",
        [Example("he go home", "He goes home.")],
        gpt_opts=GptApiOptions(temperature=0.2),
    )
    print(fix_grammar("they was late", __override={"temperature": 0}))
    print(fix_grammar("me and him goes", __extra_messages=[Message.system("Use British spelling.")]))

    for n, answer in enumerate(fix_grammar("she run fast", __override={"n": 2})):
        print(f"choice {n}: {answer}")


def main() -> None:
    if os.environ.get("OPENAI_API_KEY"):
        demo()
        return
    srv = FakeOpenAIServer()
    srv.add_rule("Motivate me.", "Small steps still move you forward.")
    srv.add_rule("they was late", "They were late.")
    srv.add_rule("me and him goes", "He and I go.")
    srv.add_rule("she run fast", ["She runs fast.", "She ran fast."])
    with srv.in_thread():
        os.environ["OPENAI_BASE_URL"] = srv.base_url
        demo()


if __name__ == "__main__":
    main()
