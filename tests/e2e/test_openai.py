"""lorad through the official `openai` Python client.

Run by tests/e2e/run.sh against a live `lorad serve`; configured by environment:
LORAD_BASE_URL (e.g. http://127.0.0.1:8080/v1), LORAD_BASE_MODEL, LORAD_ADAPTER.
Generations are short (the model runs ~20 tokens/s on a small CPU).
"""

import json
import os

import openai
import pytest

BASE_URL = os.environ["LORAD_BASE_URL"]
BASE = os.environ.get("LORAD_BASE_MODEL", "SmolLM2-135M-Instruct")
ADAPTER = os.environ.get("LORAD_ADAPTER", "ada")
TUNED = os.environ.get("LORAD_TUNED", "tuned")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client():
    # No retries: a 429/5xx must surface as the error it is, not be retried away.
    return openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0, timeout=120)


def check_usage(usage, completion_tokens=None):
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if completion_tokens is not None:
        assert usage.completion_tokens == completion_tokens


def test_shared_system_prompt_is_served_from_the_prefix_cache(client):
    system = {
        "role": "system",
        "content": "You answer questions about European geography for school children. "
        "Use one short sentence, name the country, and say so when you are unsure.",
    }

    def ask(q):
        messages = [system, {"role": "user", "content": q}]
        return client.chat.completions.create(
            model=BASE, messages=messages, max_tokens=4, temperature=0
        )

    ask("Where is Lyon?")
    r = ask("Where is Porto?")
    check_usage(r.usage)
    # The system prompt's full 16-token blocks were computed by the first request.
    assert r.usage.prompt_tokens_details.cached_tokens >= 32, r.usage


def test_vllm_extensions_through_extra_body(client):
    # Benchmark clients send vLLM's parameters through the client's extra_body.
    r = client.completions.create(
        model=BASE,
        prompt="The capital of France is",
        max_tokens=12,
        temperature=0,
        extra_body={"ignore_eos": True, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    check_usage(r.usage, completion_tokens=12)
    assert r.choices[0].finish_reason == "length"
    cont = client.chat.completions.create(
        model=BASE,
        messages=QUESTION + [{"role": "assistant", "content": "The capital of France is"}],
        max_tokens=4,
        temperature=0,
        extra_body={"continue_final_message": True},
    )
    assert cont.choices[0].message.content.startswith(" Paris"), cont.choices[0].message.content


def test_structured_output_parses_into_a_pydantic_model(client):
    # The client turns the model class into a strict JSON Schema (`response_format:
    # json_schema`) and parses the answer back; lorad constrains decoding to the schema.
    from pydantic import BaseModel, Field

    class City(BaseModel):
        city: str = Field(max_length=24)
        country: str = Field(max_length=24)
        is_capital: bool
        landmarks: list[str] = Field(max_length=3)
        rating: int = Field(ge=1, le=5)  # minimum / maximum on an integer

    r = client.chat.completions.parse(
        model=BASE,
        messages=[{"role": "user", "content": "Describe Paris as a JSON object."}],
        response_format=City,
        max_tokens=120,
        temperature=0,
    )
    city = r.choices[0].message.parsed
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(city, City) and "Paris" in city.city, r.choices[0].message.content
    assert len(city.landmarks) <= 3 and 1 <= city.rating <= 5


def test_structured_output_streams_json_and_takes_vllm_fields(client):
    stream = client.chat.completions.create(
        model=BASE,
        messages=[{"role": "user", "content": "Give two colours as a JSON object."}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    text, finish = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    if finish == "stop":
        assert isinstance(json.loads(text), dict), text
    else:
        assert text.startswith("{"), text
    for extra in ({"guided_choice": [" Paris", " London"]}, {"structured_outputs": {"choice": [" Paris", " London"]}}):
        for model in (BASE, ADAPTER):
            r = client.completions.create(
                model=model, prompt="The capital of France is", max_tokens=8, temperature=0, extra_body=extra
            )
            assert r.choices[0].text in (" Paris", " London") and r.choices[0].finish_reason == "stop", r
    # Several answers, each under its own copy of the constraint, sampled.
    r = client.completions.create(
        model=BASE,
        prompt="My favourite city is",
        max_tokens=8,
        n=3,
        seed=5,
        extra_body={"guided_choice": [" Paris", " London", " Rome"]},
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.text in (" Paris", " London", " Rome") and c.finish_reason == "stop" for c in r.choices), r
    r = client.completions.create(
        model=BASE,
        prompt="The Eiffel Tower was built in the year",
        max_tokens=8,
        temperature=0,
        extra_body={"guided_regex": r" [0-9]{4}"},
    )
    text = r.choices[0].text
    assert len(text) == 5 and text[0] == " " and text[1:].isdigit(), text
    # A GBNF grammar (llama.cpp's format), as vLLM's structured_outputs.grammar takes it.
    gbnf = 'root ::= " " answer "."\nanswer ::= "yes" | "no" | "maybe"\n'
    r = client.completions.create(
        model=BASE,
        prompt="Is water wet? Answer:",
        max_tokens=8,
        temperature=0,
        extra_body={"structured_outputs": {"grammar": gbnf}},
    )
    assert r.choices[0].text in (" yes.", " no.", " maybe."), r.choices[0].text


@pytest.mark.parametrize(
    "extra,param,words",
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "number", "minimum": 0}}}},
            "response_format",
            "minimum",
        ),
        ({"guided_regex": "(unclosed"}, "guided_regex", "regular expression"),
        ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice", "only one"),
        ({"response_format": {"type": "grammar"}}, "response_format", "grammar"),
    ],
)
def test_structured_output_refusals_name_the_field(client, extra, param, words):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=4, extra_body=extra)
    assert e.value.param == param
    assert words in str(e.value), str(e.value)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 32},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "maxLength": 32}},
                "required": ["timezone"],
            },
        },
    },
]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def test_tool_calls_named_and_required(client):
    r = client.chat.completions.create(
        model=BASE, messages=WEATHER, tools=TOOLS, tool_choice=NAMED, max_tokens=60, temperature=0
    )
    call = r.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit"), args
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content is None
    r = client.chat.completions.create(
        model=ADAPTER,
        messages=WEATHER,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=120,
        temperature=0,
    )
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and len(calls) == 1, r
    assert calls[0].function.name in ("get_weather", "get_time")
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    # The conversation goes on with the tool's answer.
    follow = WEATHER + [
        {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 C and sunny"},
    ]
    r = client.chat.completions.create(model=BASE, messages=follow, max_tokens=8, temperature=0)
    assert r.choices[0].message.content


def test_tool_calls_stream(client):
    stream = client.chat.completions.create(
        model=BASE, messages=WEATHER, tools=TOOLS, tool_choice=NAMED, max_tokens=60, temperature=0, stream=True
    )
    name, ids, arguments, finish = None, set(), "", None
    for chunk in stream:
        for d in chunk.choices[0].delta.tool_calls or []:
            assert d.index == 0
            name = d.function.name or name
            ids.add(d.id) if d.id else None
            arguments += d.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and len(ids) == 1 and finish == "stop"
    assert set(json.loads(arguments)) == {"city", "unit"}, arguments
    stream = client.chat.completions.create(
        model=BASE, messages=WEATHER, tools=TOOLS, tool_choice="required", max_tokens=120, temperature=0, stream=True
    )
    deltas, finish = [], None
    for chunk in stream:
        deltas += chunk.choices[0].delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    calls = assemble(deltas)
    assert finish == "tool_calls" and calls and len(deltas) > len(calls), deltas
    assert all(c["id"].startswith("call_") and c["name"] in ("get_weather", "get_time") and json.loads(c["arguments"]) is not None for c in calls)


def assemble(deltas):
    """Tool calls as a client builds them from stream deltas: by index, the id and name from the
    first delta of each call, the arguments joined."""
    calls = {}
    for d in deltas:
        c = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
        c["id"] = d.id or c["id"]
        c["name"] = d.function.name or c["name"]
        c["arguments"] += d.function.arguments or ""
    assert list(calls) == list(range(len(calls))), calls
    return [calls[i] for i in range(len(calls))]


def weather_shot(city, result, answer):
    """One earlier round of the conversation: the question, the call, its result, the answer."""
    call = {"id": f"call_{city}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city, "unit": "celsius"})}}
    return [
        {"role": "user", "content": f"What is the weather in {city}?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": result},
        {"role": "assistant", "content": answer},
    ]


# Two earlier rounds show the 135M model when to call. On its own it then starts the next turn
# with `<tool_response>` (copying the results it saw) rather than `<tool_call>`: its token
# `response` (7639) is banned, so the answer either calls or does not.
AUTO_SHOTS = weather_shot("Oslo", "-3 C, snow", "It is -3 C and snowing in Oslo.") + weather_shot(
    "Rome", "18 C, sun", "It is 18 C and sunny in Rome."
)
STEER = {"7639": -100}


def test_tool_choice_auto_answers_or_calls(client):
    # "auto" is the default: a question no tool helps with gets text.
    r = client.chat.completions.create(model=BASE, messages=QUESTION, tools=TOOLS, max_tokens=24, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "stop" and not c.message.tool_calls and "Paris" in c.message.content, r
    # A question the tools answer gets a call, read from the model's `<tool_call>` and held to
    # the tool's schema by the grammar.
    messages = AUTO_SHOTS + WEATHER
    r = client.chat.completions.create(
        model=BASE, messages=messages, tools=TOOLS, tool_choice="auto", max_tokens=60, temperature=0, logit_bias=STEER
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and len(c.message.tool_calls) == 1, r
    call = c.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and "Paris" in args["city"], args
    assert not (c.message.content or "").strip()
    # Streamed: nothing of the call leaks as content; the call's id and name come first, its
    # arguments as they are generated.
    stream = client.chat.completions.create(
        model=BASE, messages=messages, tools=TOOLS, max_tokens=60, temperature=0, logit_bias=STEER, stream=True
    )
    content, deltas, finish = "", [], None
    for chunk in stream:
        d = chunk.choices[0].delta
        content += d.content or ""
        deltas += d.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert "<tool" not in content and not content.strip(), content
    calls = assemble(deltas)
    assert finish == "tool_calls" and len(calls) == 1 and len(deltas) > 1, deltas
    assert (calls[0]["name"], json.loads(calls[0]["arguments"])) == ("get_weather", args)
    # The call goes back with its result; the model answers in text.
    follow = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "21 C, clear"},
    ]
    r = client.chat.completions.create(model=BASE, messages=follow, tools=TOOLS, max_tokens=30, temperature=0)
    assert r.choices[0].message.content, r


def test_tool_calls_with_several_answers(client):
    # Each answer is held to the tools on its own and returns its own calls.
    r = client.chat.completions.create(
        model=BASE, messages=WEATHER, tools=TOOLS, tool_choice="required", n=3, max_tokens=80, temperature=0.9, seed=5
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    for c in r.choices:
        assert c.finish_reason == "tool_calls" and c.message.tool_calls, c
        assert all(isinstance(json.loads(t.function.arguments), dict) for t in c.message.tool_calls)
    # Streamed, a named call's arguments arrive as deltas per answer; "auto" calls come whole.
    args = {0: "", 1: ""}
    names, finish = {}, {}
    stream = client.chat.completions.create(
        model=BASE, messages=WEATHER, tools=TOOLS, tool_choice=NAMED, n=2, max_tokens=60, temperature=0.9, seed=5, stream=True
    )
    for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or []:
                names[c.index] = d.function.name or names.get(c.index)
                args[c.index] += d.function.arguments or ""
            finish[c.index] = c.finish_reason or finish.get(c.index)
    assert names == {0: "get_weather", 1: "get_weather"} and finish == {0: "stop", 1: "stop"}
    assert all(set(json.loads(a)) == {"city", "unit"} for a in args.values()), args
    stream = client.chat.completions.create(
        model=BASE, messages=AUTO_SHOTS + WEATHER, tools=TOOLS, n=2, max_tokens=60, temperature=0, logit_bias=STEER, stream=True
    )
    calls, finish = {}, {}
    for chunk in stream:
        for c in chunk.choices:
            assert "<tool" not in (c.delta.content or "")
            calls.setdefault(c.index, []).extend(c.delta.tool_calls or [])
            finish[c.index] = c.finish_reason or finish.get(c.index)
    assert finish == {0: "tool_calls", 1: "tool_calls"}, finish
    assert all([c["name"] for c in assemble(calls[i])] == ["get_weather"] for i in (0, 1)), calls


def test_tokenize_describes_tools_like_chat(client):
    def count(**extra):
        url = BASE_URL.removesuffix("/v1") + "/tokenize"  # vLLM's path: outside /v1
        return client.post(url, cast_to=object, body={"model": BASE, "messages": WEATHER, **extra})["count"]

    assert count(tools=TOOLS) > count() + 50


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}], "tool_choice": "required"}, "tools[0].function.name"),
    ],
)
def test_tool_choice_refusals_name_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=BASE, messages=WEATHER, max_tokens=4, **extra)
    assert e.value.param == param, str(e.value)


def test_continuous_usage_stats(client):
    # vLLM's extension: with include_usage, every chunk carries the usage so far.
    options = {"include_usage": True, "continuous_usage_stats": True}
    stream = client.completions.create(
        model=BASE,
        prompt="Once upon a time",
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options=options,
        extra_body={"ignore_eos": True},  # exactly 6 tokens, whatever the model would say
    )
    seen = [c.usage.completion_tokens for c in stream if c.usage is not None]
    assert len(seen) >= 4 and seen == sorted(seen) and seen[-1] == 6, seen
    stream = client.chat.completions.create(
        model=BASE,
        messages=QUESTION,
        max_tokens=4,
        n=2,
        temperature=0,
        stream=True,
        stream_options=options,
        extra_body={"ignore_eos": True},
    )
    seen = [c.usage for c in stream if c.usage is not None]
    counts = [u.completion_tokens for u in seen]
    assert counts == sorted(counts) and counts[-1] == 8, counts
    assert all(u.total_tokens == u.prompt_tokens + u.completion_tokens for u in seen)


def test_models_list_has_base_and_adapter(client):
    models = {m.id: m for m in client.models.list()}
    assert BASE in models and ADAPTER in models, models
    assert models[BASE].owned_by == "lorad"
    assert client.models.retrieve(ADAPTER).id == ADAPTER


def test_greedy_chat_knows_paris(client):
    r = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=16, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == BASE
    assert r.choices[0].message.role == "assistant"
    assert "Paris" in r.choices[0].message.content, r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    check_usage(r.usage)


def test_streaming_chat_on_base(client):
    stream = client.chat.completions.create(
        model=BASE,
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text, text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert chunks[-1].choices == []
    check_usage(chunks[-1].usage)


def test_completion_on_base(client):
    r = client.completions.create(model=BASE, prompt="The capital of France is", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert "Paris" in r.choices[0].text, r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    check_usage(r.usage, completion_tokens=6)


def test_streaming_completion_on_base(client):
    chunks = list(client.completions.create(model=BASE, prompt="1, 2, 3, 4,", max_tokens=8, temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert "5" in text, text
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_on_adapter(client, stream):
    kwargs = dict(model=ADAPTER, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        assert all(c.model == ADAPTER for c in chunks)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    else:
        r = client.chat.completions.create(**kwargs)
        assert r.model == ADAPTER
        assert isinstance(r.choices[0].message.content, str)
        check_usage(r.usage)


@pytest.mark.parametrize("stream", [False, True])
def test_completion_on_adapter(client, stream):
    kwargs = dict(model=ADAPTER, prompt="Once upon a time", max_tokens=8, temperature=0)
    if stream:
        chunks = list(client.completions.create(stream=True, **kwargs))
        assert all(c.model == ADAPTER for c in chunks)
    else:
        r = client.completions.create(**kwargs)
        assert r.model == ADAPTER
        check_usage(r.usage)


def test_seeded_sampling_is_reproducible(client):
    kwargs = dict(model=BASE, prompt="My favourite food is", max_tokens=8, temperature=1.0, top_p=0.9, seed=1234)
    a = client.completions.create(**kwargs).choices[0].text
    b = client.completions.create(**kwargs).choices[0].text
    assert a == b


def test_stop_sequence(client):
    r = client.completions.create(model=BASE, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0, stop=[" 8"])
    assert " 8" not in r.choices[0].text and "7" in r.choices[0].text, r.choices[0].text
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprobs_parse_in_the_official_client(client, stream):
    kwargs = dict(model=BASE, messages=QUESTION, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    if stream:
        chunks = [c for c in client.chat.completions.create(stream=True, **kwargs) if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        content = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    else:
        r = client.chat.completions.create(**kwargs)
        text, content = r.choices[0].message.content, r.choices[0].logprobs.content
    assert content, "logprobs requested, none returned"
    assert b"".join(bytes(t.bytes) for t in content).decode() == text
    for t in content:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6


def test_completion_logprobs_parse_in_the_official_client(client):
    r = client.completions.create(model=BASE, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert all(max(top.values()) == pytest.approx(v) for top, v in zip(lp.top_logprobs, lp.token_logprobs))


def test_echo_scores_the_prompt_like_an_evaluation_harness(client):
    # lm-eval-harness's log-likelihood request: the prompt echoed with its tokens' logprobs, nothing generated.
    r = client.completions.create(model=BASE, prompt="The capital of France is Paris", max_tokens=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == "The capital of France is Paris"
    assert "".join(lp.tokens) == r.choices[0].text and lp.token_logprobs[0] is None
    assert all(v < 0 for v in lp.token_logprobs[1:]) and r.usage.completion_tokens == 0


def test_several_prompts_and_n_in_the_official_client(client):
    r = client.completions.create(model=BASE, prompt=["1, 2, 3,", "a, b, c,"], n=2, max_tokens=3, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text == r.choices[1].text and r.usage.completion_tokens == 12
    chat = client.chat.completions.create(model=BASE, messages=QUESTION, n=2, max_tokens=8, temperature=0)
    assert [c.index for c in chat.choices] == [0, 1]
    assert chat.choices[0].message.content == chat.choices[1].message.content


def test_unknown_model_is_not_found(client):
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4, stream=stream)
        assert e.value.code == "model_not_found"
        assert "does not exist" in str(e.value)


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"temperature": 9}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"max_tokens": 10_000_000}, "messages"),
    ],
)
def test_bad_requests_name_the_field(client, extra, param):
    kwargs = dict(model=BASE, messages=QUESTION, max_tokens=4)
    kwargs.update(extra)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**kwargs)
    assert e.value.param == param


def test_context_length_code(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=BASE, prompt="hi", max_tokens=10_000_000)
    assert e.value.code == "context_length_exceeded"


def attribution_of(resp):
    """The `attribution` extension field of a response or chunk (None when absent)."""
    return (resp.model_extra or {}).get("attribution")


@pytest.mark.parametrize("stream", [False, True])
def test_finetuned_adapter_answers_carry_attribution(client, stream):
    kwargs = dict(model=TUNED, prompt="The copper kettle", max_tokens=8, temperature=0)
    if stream:
        chunks = list(client.completions.create(stream=True, **kwargs))
        found = [attribution_of(c) for c in chunks if attribution_of(c) is not None]
        assert len(found) == 1
        attr = found[0]
    else:
        r = client.completions.create(**kwargs)
        attr = attribution_of(r)
        assert (r.usage.model_extra or {}).get("attribution_ms") is not None
        again = attribution_of(client.completions.create(**kwargs))
        assert json.dumps(attr, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert attr["method"] == "gradient" and attr["datanet"] == "dn"
    assert sum(c["weight_bps"] for c in attr["contributors"]) == 10000
    assert {r["id"] for r in attr["records"]} == {"a1", "a2", "b1", "b2", "c1", "c2"}


def test_attribution_opt_out(client):
    r = client.completions.create(
        model=TUNED, prompt="The copper kettle", max_tokens=4, extra_body={"attribution": False}
    )
    assert attribution_of(r) is None
