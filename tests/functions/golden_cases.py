"""The golden cases: slambda function definitions and calls, stored as data so that both the published
package and aioagents can replay them.

Each golden file ``golden/<name>.json`` holds a case (``create``, ``call``, ``answer``) plus what slambda
0.0.15 did with it against :class:`~aioagents.testing.FakeOpenAIServer`: the request body it sent and the
value it returned. Regenerate them with ``.venv/bin/python tests/functions/golden_cases.py`` (it runs
slambda and the openai SDK against the fake); ``test_slambda_reference.py`` checks that slambda still
produces them, and the aioagents tests check that our functions send the same bodies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"

CASES: dict[str, dict[str, Any]] = {
    "nullary_str_default": {
        "create": {
            "instruction": "Write one short motivational sentence.",
            "examples": [
                {"output": "Keep going, you are closer than you think."},
                {"output": "Small steps count."},
            ],
            "default_args": "Motivate me.",
            "strict_no_args": True,
        },
        "call": {},
        "answer": "You can do hard things.",
    },
    "nullary_dict_default": {
        "create": {
            "instruction": "Write a haiku about the given topic.",
            "examples": [{"output": "Rain on the tin roof"}],
            "default_args": {"topic": "autumn", "mood": "calm"},
            "strict_no_args": True,
        },
        "call": {},
        "answer": "Leaves drift, quiet air",
    },
    "unary": {
        "create": {
            "instruction": "Classify the sentiment of the text as positive, negative or neutral.",
            "examples": [
                {"input": "I love this phone!", "output": "positive"},
                {"input": "Worst purchase ever.", "output": "negative"},
            ],
        },
        "call": {"args": ["It arrived on time."]},
        "answer": "neutral",
    },
    "unary_default": {
        "create": {
            "instruction": "Summarize the text in five words.",
            "examples": [
                {
                    "input": "The meeting moved to Friday because the room was booked.",
                    "output": "Meeting moved to Friday.",
                },
                {"output": "Nothing to summarize here."},
            ],
            "default_args": "(no text)",
        },
        "call": {},
        "answer": "Nothing to summarize here.",
    },
    "keyword": {
        "create": {
            "instruction": "Add the two numbers.",
            "examples": [
                {"input": {"a": 1, "b": 2}, "output": "3"},
                {"input": {"a": 10, "b": -4}, "output": "6"},
            ],
        },
        "call": {"kwargs": {"a": 12, "b": 30}},
        "answer": "42",
    },
    "keyword_default": {
        "create": {
            "instruction": "Write an essay title for the topic and style.",
            "examples": [
                {"input": {"topic": "rivers", "style": "formal"}, "output": "On the Nature of Rivers"},
                {"output": "On Nothing in Particular"},
            ],
            "default_args": {"topic": "anything", "style": "casual"},
        },
        "call": {},
        "answer": "Whatever, Really",
    },
    "keyword_values": {
        "create": {
            "instruction": "Describe the settings.",
            "examples": [{"input": {"k1": 12, "flag": True, "ratio": 0.5, "tags": ["a", "b"]}, "output": "ok"}],
        },
        "call": {"kwargs": {"k1": None, "flag": False, "ratio": 1e-3, "tags": {"x": 1}}},
        "answer": "described",
    },
    "template": {
        "create": {
            "instruction": "Does the premise entail the hypothesis? Answer yes or no.",
            "examples": [
                {"input": {"premise": "A cat sleeps.", "hypothesis": "An animal rests."}, "output": "yes"},
                {"input": {"premise": "It rains.", "hypothesis": "The ground is dry."}, "output": "no"},
            ],
            "message_template": "Premise: {premise}\nHypothesis: {hypothesis}",
        },
        "call": {"kwargs": {"premise": "Tom bought a car.", "hypothesis": "Tom owns a car.", "unused": "ignored"}},
        "answer": "yes",
    },
    "json_dict_output": {
        "create": {
            "instruction": "Extract the city and the temperature as JSON.",
            "examples": [
                {"input": "It is 21°C in Zürich.", "output": {"city": "Zürich", "temp_c": 21}},
                {
                    "input": "Oslo: minus three",
                    "output": {"city": "Oslo", "temp_c": -3, "notes": [None, True]},
                },
            ],
        },
        "call": {"args": ["Paris is at 30 degrees."]},
        "answer": '{"city": "Paris", "temp_c": 30}',
    },
    "json_list_output": {
        "create": {
            "instruction": "List the wiki links in the text.",
            "examples": [{"input": "See [[Python]] and [[Go]].", "output": ["Python", "Go"]}],
        },
        "call": {"args": ["Read [[Rust]]."]},
        "answer": '["Rust"]',
    },
    "override": {
        "create": {
            "instruction": "Fix the grammar.",
            "examples": [{"input": "he go home", "output": "He goes home."}],
            "gpt_opts": {"temperature": 0.2, "max_tokens": 64, "user": "u-1"},
        },
        "call": {
            "args": ["they was late"],
            "override": {
                "temperature": 0.9,
                "model": "gpt-4o",
                "max_tokens": 3,
                "top_p": 0.5,
                "stop": ["\n\n"],
            },
        },
        "answer": "They were late today.",
    },
    "extra_messages": {
        "create": {
            "instruction": "Answer using the conversation so far.",
            "examples": [{"input": "What is 2+2?", "output": "4"}],
        },
        "call": {
            "args": ["And what was my name?"],
            "extra_messages": [
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Nice to meet you, Ada."},
                {"role": "system", "content": "Be brief.", "name": "policy"},
            ],
        },
        "answer": "Ada.",
    },
    "n3": {
        "create": {
            "instruction": "Suggest a name for a pet.",
            "examples": [{"input": "cat", "output": "Whiskers"}],
            "gpt_opts": {"n": 3},
        },
        "call": {"args": ["dog"]},
        "answer": ["Rex", "Buddy", "Max"],
    },
    "n2_json": {
        "create": {
            "instruction": "Return the word and its length as JSON.",
            "examples": [{"input": "cat", "output": {"word": "cat", "len": 3}}],
        },
        "call": {"args": ["horse"], "override": {"n": 2}},
        "answer": ['{"word": "horse", "len": 5}', '{"len": 5, "word": "horse"}'],
    },
    "all_options": {
        "create": {
            "instruction": "Translate to French.",
            "examples": [{"input": "hello", "output": "bonjour"}],
            "name": "translate",
            "gpt_opts": {
                "model": "gpt-4.1-nano",
                "temperature": 0,
                "n": 1,
                "top_p": 1,
                "stop": "END",
                "max_tokens": 10,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "logit_bias": {"50256": -100, "1234": 5},
                "user": "user-42",
            },
        },
        "call": {"args": ["good night"]},
        "answer": "bonne nuit END ignored",
    },
    "override_whole_numbers": {
        "create": {
            "instruction": "Translate to German.",
            "examples": [{"input": "good morning", "output": "guten Morgen"}],
            "gpt_opts": {"temperature": 0.7, "top_p": 1},
        },
        "call": {
            "args": ["thank you"],
            "override": {"temperature": 0, "presence_penalty": 1, "max_tokens": 5},
        },
        "answer": "danke",
    },
    "return_resp_obj": {
        "create": {
            "instruction": "Say hi.",
            "examples": [{"input": "Bob", "output": "Hi Bob!"}],
        },
        "call": {"args": ["Eve"], "return_resp_obj": True},
        "answer": "Hi Eve!",
    },
    "stream": {
        "create": {
            "instruction": "Tell a very short story.",
            "examples": [{"input": "a fox", "output": "The fox ran home."}],
            "gpt_opts": {"stream": True},
        },
        "call": {"args": ["a robot"]},
        "answer": "The robot learned to sing.",
    },
}


def load(name: str) -> dict[str, Any]:
    """One golden file, parsed."""
    return dict(json.loads((GOLDEN_DIR / f"{name}.json").read_text()))


def golden_names() -> list[str]:
    """The names of every stored golden file."""
    return sorted(p.stem for p in GOLDEN_DIR.glob("*.json"))


def configure_answer(srv: Any, case: dict[str, Any]) -> None:
    """Make the fake answer this case's final user message with the case's canned answer."""
    srv.add_rule(lambda body: True, case["answer"])


def run_slambda(case: dict[str, Any]) -> Any:
    """Build the case's function with slambda (which reads OPENAI_API_KEY and OPENAI_BASE_URL) and call it.

    Returns what the call returned, reduced to JSON: the value itself, the first choice's content for a raw
    response object, or the joined deltas for a stream.
    """
    import slambda  # type: ignore[import-untyped]
    from slambda.core import LmFunction  # type: ignore[import-untyped]

    spec = case["create"]
    examples = [slambda.Example(input=e.get("input"), output=e["output"]) for e in spec["examples"]]
    options = {k: v for k, v in spec.items() if k not in ("instruction", "examples", "gpt_opts")}
    if "gpt_opts" in spec:
        options["gpt_opts"] = slambda.GptApiOptions(**spec["gpt_opts"])
    fn = LmFunction.create(spec["instruction"], examples, **options)
    call = case["call"]
    kwargs = dict(call.get("kwargs", {}))
    if "override" in call:
        kwargs["__override"] = call["override"]
    if "extra_messages" in call:
        kwargs["__extra_messages"] = [slambda.Message(**m) for m in call["extra_messages"]]
    if call.get("return_resp_obj"):
        kwargs["__return_resp_obj"] = True
    result = fn(*call.get("args", []), **kwargs)
    if call.get("return_resp_obj"):
        return {"response_content": result.choices[0].message.content}
    if spec.get("gpt_opts", {}).get("stream"):
        return {"stream_content": "".join(c.choices[0].delta.content or "" for c in result if c.choices)}
    return result


def record() -> None:
    """Run every case through slambda against the fake and write the golden files."""
    from aioagents.testing._openai import FakeOpenAIServer

    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, case in CASES.items():
        srv = FakeOpenAIServer(api_key="sk-golden")
        configure_answer(srv, case)
        with srv.in_thread():
            os.environ["OPENAI_API_KEY"] = "sk-golden"
            os.environ["OPENAI_BASE_URL"] = srv.base_url
            result = run_slambda(case)
        (request,) = srv.requests_to("/v1/chat/completions")
        out = {"case": name, **case, "request": request.json(), "result": result}
        (GOLDEN_DIR / f"{name}.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote golden/{name}.json", file=sys.stderr)


if __name__ == "__main__":
    record()
