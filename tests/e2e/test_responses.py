"""`POST /v1/responses` (OpenAI's Responses API) through the official `openai` client.

Run by tests/e2e/run.sh with test_openai.py, against the same live `lorad serve`.
"""

import json

import openai
import pytest
from pydantic import BaseModel

from test_openai import ADAPTER, AUTO_SHOTS, BASE, STEER, TOOLS, client  # noqa: F401 (fixture)

# The Responses API's function tools are flat: the chat tool's `function` fields at the top.
FLAT_TOOLS = [{"type": "function", **TOOLS[0]["function"]}]


def as_items(messages):
    """Chat messages (with tool calls and results) as Responses input items."""
    items = []
    for m in messages:
        if m.get("tool_calls"):
            for c in m["tool_calls"]:
                f = c["function"]
                items.append({"type": "function_call", "call_id": c["id"], "name": f["name"], "arguments": f["arguments"]})
        elif m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})
        else:
            items.append({"role": m["role"], "content": m["content"]})
    return items


def test_text_whole_and_streamed(client):
    r = client.responses.create(model=BASE, input="What is the capital of France?", max_output_tokens=24, temperature=0)
    assert r.object == "response" and r.status == "completed" and "Paris" in r.output_text, r
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    events = list(
        client.responses.create(model=BASE, input="What is the capital of France?", max_output_tokens=24, temperature=0, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    # Greedy: the stream says what the whole response said.
    assert text == final.output_text == r.output_text and final.usage.output_tokens == r.usage.output_tokens


def test_instructions_parts_limits_and_adapters(client):
    r = client.responses.create(
        model=ADAPTER,
        instructions="Answer in one word.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is the capital of Italy?"}]}],
        max_output_tokens=3,
        temperature=0,
    )
    assert r.model == ADAPTER and r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_structured_output(client):
    class City(BaseModel):
        name: str
        country: str

    r = client.responses.parse(model=BASE, input="Describe Paris as JSON.", text_format=City, max_output_tokens=60, temperature=0)
    assert isinstance(r.output_parsed, City) and r.output_parsed.name, r


def test_function_calls_and_results(client):
    items = as_items(AUTO_SHOTS) + [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.responses.create(
        model=BASE, input=items, tools=FLAT_TOOLS, max_output_tokens=60, temperature=0, extra_body={"logit_bias": STEER}
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert r.status == "completed" and len(calls) == 1, r
    assert calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    args = json.loads(calls[0].arguments)
    assert "Paris" in args["city"], args
    events = list(
        client.responses.create(
            model=BASE, input=items, tools=FLAT_TOOLS, max_output_tokens=60, temperature=0, extra_body={"logit_bias": STEER}, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert "response.output_text.delta" not in kinds and "response.function_call_arguments.done" in kinds, kinds
    done = [e for e in events if e.type == "response.output_item.done"]
    assert done[0].item.type == "function_call" and json.loads(done[0].item.arguments) == args
    # The result goes back as a function_call_output item; the model answers in text.
    follow = items + [
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "21 C, clear"},
    ]
    r = client.responses.create(model=BASE, input=follow, tools=FLAT_TOOLS, max_output_tokens=30, temperature=0)
    assert r.output_text, r
    # A named function streams its arguments as deltas.
    events = list(
        client.responses.create(
            model=BASE,
            input="What is the weather in Paris?",
            tools=FLAT_TOOLS,
            tool_choice={"type": "function", "name": "get_weather"},
            max_output_tokens=60,
            temperature=0,
            stream=True,
        )
    )
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert set(json.loads(deltas)) == {"city", "unit"} and events[-1].response.output[0].arguments == deltas


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0].type"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": "many"}, "max_output_tokens"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "number", "minimum": 1}}}}, "text.format"),
        ({"model": "nope"}, "model"),
    ],
)
def test_refusals_name_the_field(client, extra, param):
    args = {"model": BASE, "input": "hi", "max_output_tokens": 4, **extra}
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as e:
        client.responses.create(**args)
    assert e.value.body.get("param") == param, e.value.body
