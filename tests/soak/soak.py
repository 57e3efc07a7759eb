"""Chaos soak of a running `lorad serve`: what a production node sees in a bad hour, at once.

Many concurrent clients send a random mix of requests (completions, chat, responses; streaming
and not; base and every adapter; sampling, n > 1, logprobs, stop strings, JSON Schema, tools,
priorities, invalid bodies), some hang up mid-stream, while an operator thread uploads, pins,
unpins and removes adapters and sends SIGHUP. Afterwards it checks what must hold:

* no 5xx answer, no malformed body or SSE stream, every 4xx an OpenAI error object;
* constrained answers parse (and name the tool they were held to);
* the node is idle again: nothing running or waiting, every KV block free;
* batch invariance: every greedy request replayed alone, on a quiet node, gets the same text it
  got under load (adapters that were replaced or removed since are skipped).

Run by tests/soak/run.sh; configured by environment (see there). Prints a summary and exits
non-zero if anything failed. Seeded (SOAK_SEED): the same seed sends the same requests, though
their interleaving depends on timing.
"""

import asyncio
import json
import os
import random
import signal
import sys
import time

try:  # the openai client the end-to-end suite pins ships httpx as `httpx2`
    import httpx2 as httpx
except ImportError:
    import httpx

BASE_URL = os.environ["LORAD_URL"]  # http://127.0.0.1:PORT
BASE = os.environ.get("LORAD_BASE_MODEL", "SmolLM2-135M-Instruct")
ADAPTERS = [a for a in os.environ.get("SOAK_ADAPTERS", "").split(",") if a]
UPLOADS = os.environ.get("SOAK_UPLOADS", "")  # dir of PEFT dirs the operator may upload
ADMIN = os.environ.get("SOAK_ADMIN_TOKEN", "")
PID = int(os.environ.get("LORAD_PID", "0"))
DURATION = float(os.environ.get("SOAK_SECONDS", "300"))
CONCURRENCY = int(os.environ.get("SOAK_CONCURRENCY", "16"))
SEED = int(os.environ.get("SOAK_SEED", "1"))
PRIORITY = os.environ.get("SOAK_PRIORITY", "0") == "1"

PROMPTS = [
    "The capital of France is",
    "Write a haiku about the sea.",
    "List three prime numbers:",
    "def fibonacci(n):",
    "Once upon a time, in a village by the river,",
    "Explain photosynthesis to a child in two sentences.",
    "Translate to French: the cat sleeps on the warm roof.",
    "1, 2, 3, 4, 5, 6, 7,",
]
# About 500 tokens: prefilled in chunks, and a few of them at once overflow the soak's KV cache.
LONG = " ".join(
    f"Note {i}: the {w} ledger of the mill was checked against the river gauge at dawn." for i, w in
    zip(range(40), ["copper", "granite", "willow", "amber", "cobalt"] * 8)
) + " Summarize the notes."
SYSTEM = "You are a concise assistant for a soak test. Answer in one short sentence."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Tally:
    def __init__(self):
        self.counts = {}
        self.failures = []
        self.greedy = []  # (model, endpoint, body, text) of finished greedy requests

    def count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def fail(self, what):
        self.failures.append(what)
        print("FAIL:", what[:600], file=sys.stderr, flush=True)


T = Tally()
# Adapters whose content may have changed (re-uploaded or removed) since a greedy answer: not
# replayed. The operator adds to it before it acts.
TOUCHED = set()


def pick_model(rng, models):
    return rng.choice([BASE] + models) if rng.random() < 0.85 else BASE


def request_body(rng, models):
    """A random valid request: (endpoint, body, greedy, check)."""
    model = pick_model(rng, models)
    endpoint = rng.choice(["completions", "chat", "chat", "responses"])
    greedy = rng.random() < 0.4
    body = {"model": model}
    if greedy:
        body["temperature"] = 0
    else:
        body["temperature"] = rng.choice([0.3, 0.7, 1.0, 1.3])
        body["seed"] = rng.randrange(1 << 31)
        if rng.random() < 0.3:
            body["top_p"] = rng.choice([0.5, 0.9])
    if PRIORITY and endpoint != "responses":
        body["priority"] = rng.choice([-1, 0, 0, 1])
    max_tokens = rng.choice([1, 4, 16, 32, 64])
    check = None
    if endpoint == "completions":
        body["prompt"] = LONG if rng.random() < 0.08 else rng.choice(PROMPTS)
        body["max_tokens"] = max_tokens
        if rng.random() < 0.2:
            body["logprobs"] = rng.choice([0, 2, 5])
        if rng.random() < 0.2:
            body["stop"] = [rng.choice([".", "\n", " the"])]
        if not greedy and rng.random() < 0.2:
            body["n"] = rng.choice([2, 3])
        if rng.random() < 0.1:
            body["echo"] = True
    elif endpoint == "chat":
        messages = [{"role": "user", "content": LONG if rng.random() < 0.05 else rng.choice(PROMPTS)}]
        if rng.random() < 0.5:
            messages.insert(0, {"role": "system", "content": SYSTEM})
        body["messages"] = messages
        body["max_tokens"] = max_tokens
        kind = rng.random()
        if kind < 0.1:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
            body["max_tokens"] = 80
            check = "schema"
        elif kind < 0.2:
            body["messages"] = [{"role": "user", "content": "What is the weather in Paris?"}]
            body["tools"] = TOOLS
            body["tool_choice"] = rng.choice(["required", {"type": "function", "function": {"name": "get_weather"}}])
            body["max_tokens"] = 80
            check = "tool"
        elif kind < 0.3:
            body["logprobs"] = True
            body["top_logprobs"] = rng.choice([0, 3])
        if not greedy and check is None and rng.random() < 0.15:
            body["n"] = 2
    else:
        body["input"] = rng.choice(PROMPTS)
        body["max_output_tokens"] = max(max_tokens, 16)
        body.pop("seed", None)
    return endpoint, body, greedy, check


def invalid_body(rng):
    """A request that must get a 4xx with an OpenAI error object."""
    return rng.choice(
        [
            ("completions", {"model": BASE, "prompt": "x", "max_tokens": -1}),
            ("completions", {"model": "no-such-model", "prompt": "x"}),
            ("chat", {"model": BASE, "messages": []}),
            ("chat", {"model": BASE, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            ("chat", {"model": BASE, "messages": [{"role": "user", "content": "x"}], "n": 0}),
            ("completions", {"model": BASE, "prompt": "x " * 20000, "max_tokens": 4}),
            ("chat", {"model": BASE, "messages": [{"role": "user", "content": "x"}],
                      "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "nonsense"}}}}),
        ]
    )


PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions", "responses": "/v1/responses"}


def without_ids(v):
    """`v` without its "id" fields (fresh per answer)."""
    if isinstance(v, dict):
        return {k: without_ids(x) for k, x in v.items() if k != "id"}
    if isinstance(v, list):
        return [without_ids(x) for x in v]
    return v


def text_of(endpoint, obj):
    if endpoint == "completions":
        return [c["text"] for c in obj["choices"]]
    if endpoint == "chat":
        return [json.dumps(without_ids([c["message"].get("content"), c["message"].get("tool_calls")])) for c in obj["choices"]]
    return [json.dumps(without_ids(obj.get("output")))]


def check_answer(endpoint, body, obj, check):
    if endpoint in ("completions", "chat"):
        n = body.get("n", 1)
        if len(obj.get("choices", [])) != n:
            T.fail(f"{endpoint}: {len(obj.get('choices', []))} choices for n={n}")
            return
        usage = obj.get("usage") or {}
        if usage.get("total_tokens") != usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0):
            T.fail(f"{endpoint}: usage does not add up: {usage}")
    if check == "schema":
        for c in obj["choices"]:
            if c["finish_reason"] != "stop":
                continue
            try:
                v = json.loads(c["message"]["content"])
                assert set(v) == {"name", "age"} and isinstance(v["age"], int), v
            except Exception as e:  # noqa: BLE001
                T.fail(f"schema answer does not hold: {c['message']['content']!r}: {e}")
    if check == "tool":
        for c in obj["choices"]:
            calls = c["message"].get("tool_calls") or []
            if c["finish_reason"] in ("tool_calls", "stop") and not calls:
                T.fail(f"forced tool call missing: {c}")
            for call in calls:
                if call["function"]["name"] != "get_weather":
                    T.fail(f"tool call to {call['function']['name']}")
                else:
                    json.loads(call["function"]["arguments"])


async def read_stream(resp, endpoint, hang_up_after):
    """Reads an SSE stream, checking every event parses; returns (chunks, done_seen)."""
    chunks = 0
    done = False
    async for line in resp.aiter_lines():
        if not line or line.startswith(":"):
            continue
        if line.startswith("event:"):
            continue
        if not line.startswith("data: "):
            T.fail(f"{endpoint}: SSE line without data: {line[:200]!r}")
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        try:
            ev = json.loads(data)
        except json.JSONDecodeError:
            T.fail(f"{endpoint}: SSE data is not JSON: {data[:200]!r}")
            continue
        if "error" in ev and endpoint != "responses":
            T.fail(f"{endpoint}: error inside the stream: {ev}")
        chunks += 1
        if hang_up_after is not None and chunks >= hang_up_after:
            return chunks, False
    return chunks, done


async def client_loop(cid, deadline, http):
    rng = random.Random(SEED * 1000 + cid)
    while time.monotonic() < deadline:
        models = [a for a in ADAPTERS if a not in REMOVED]
        if rng.random() < 0.05:
            endpoint, body = invalid_body(rng)
            r = await http.post(PATHS[endpoint], json=body)
            T.count(f"invalid {r.status_code}")
            if not 400 <= r.status_code < 500 or "error" not in r.json():
                T.fail(f"invalid {endpoint} body got {r.status_code}: {r.text[:300]}")
            continue
        endpoint, body, greedy, check = request_body(rng, models)
        stream = rng.random() < 0.4 and check is None
        try:
            if stream:
                body["stream"] = True
                if endpoint != "responses":
                    body["stream_options"] = {"include_usage": True}
                hang_up = rng.choice([None, None, None, 1, 3])
                async with http.stream("POST", PATHS[endpoint], json=body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        note_status(endpoint, body, r.status_code, r.text)
                        continue
                    chunks, done = await read_stream(r, endpoint, hang_up)
                    if hang_up is None and endpoint != "responses" and not done:
                        T.fail(f"{endpoint}: stream ended without [DONE] after {chunks} chunks")
                T.count("stream hung up" if hang_up else "stream ok")
            else:
                r = await http.post(PATHS[endpoint], json=body)
                if r.status_code != 200:
                    note_status(endpoint, body, r.status_code, r.text)
                    continue
                obj = r.json()
                check_answer(endpoint, body, obj, check)
                T.count(f"{endpoint} ok")
                if greedy and body.get("n", 1) == 1:
                    T.greedy.append((endpoint, body, text_of(endpoint, obj)))
        except httpx.HTTPError as e:
            T.fail(f"{endpoint}: transport error {type(e).__name__}: {e}")


def note_status(endpoint, body, status, text):
    T.count(f"{endpoint} {status}")
    if status >= 500 and not (status == 503 and '"adapter_capacity"' in text and "waited" in text):
        T.fail(f"{endpoint} answered {status}: {text[:400]} for {json.dumps(body)[:300]}")
    elif status == 404 and body["model"] in TOUCHED:
        pass  # removed by the operator meanwhile
    elif status == 429:
        pass  # queue full: allowed under load
    elif status == 503 and '"adapter_capacity"' in text and "waited" in text:
        pass  # the device budget stayed held past the admit timeout: allowed under load
    else:
        T.fail(f"{endpoint} answered {status}: {text[:400]} for {json.dumps(body)[:300]}")


REMOVED = set()


async def operator_loop(deadline, http):
    """Admin churn: upload, pin, unpin, remove, SIGHUP."""
    rng = random.Random(SEED)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    uploads = sorted(os.listdir(UPLOADS)) if UPLOADS else []
    while time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(1, 4))
        action = rng.choice(["pin", "unpin", "upload", "remove", "hup", "list"])
        if action in ("pin", "unpin") and ADAPTERS:
            name = rng.choice(ADAPTERS)
            r = await http.post(f"/v1/adapters/{name}/{action}", headers=auth)
            T.count(f"op {action} {r.status_code}")
            if r.status_code not in (200, 404, 409):
                T.fail(f"{action} {name}: {r.status_code} {r.text[:300]}")
        elif action == "upload" and uploads:
            src = os.path.join(UPLOADS, rng.choice(uploads))
            name = f"up-{rng.randrange(4)}"
            TOUCHED.add(name)
            files = {
                "name": (None, name),
                "adapter_config.json": open(os.path.join(src, "adapter_config.json"), "rb").read(),
                "adapter_model.safetensors": open(os.path.join(src, "adapter_model.safetensors"), "rb").read(),
            }
            r = await http.post("/v1/adapters", headers=auth, files=files)
            T.count(f"op upload {r.status_code}")
            if r.status_code in (200, 201):
                if name not in ADAPTERS:
                    ADAPTERS.append(name)
                REMOVED.discard(name)
            elif r.status_code != 409:
                T.fail(f"upload {name}: {r.status_code} {r.text[:300]}")
        elif action == "remove":
            live = [a for a in ADAPTERS if a.startswith("up-") and a not in REMOVED]
            if live:
                name = rng.choice(live)
                TOUCHED.add(name)
                REMOVED.add(name)
                force = rng.random() < 0.5
                q = "?force=true&drain_secs=2" if force else ""
                r = await http.delete(f"/v1/adapters/{name}{q}", headers=auth)
                T.count(f"op remove {r.status_code}")
                if r.status_code == 409:  # in use (past the drain, when forced)
                    REMOVED.discard(name)
                elif r.status_code not in (200, 204):
                    T.fail(f"remove {name}: {r.status_code} {r.text[:300]}")
        elif action == "hup" and PID:
            os.kill(PID, signal.SIGHUP)
            T.count("op SIGHUP")
        else:
            r = await http.get("/v1/adapters", headers=auth)
            if r.status_code != 200:
                T.fail(f"adapter list: {r.status_code}")


def metric(text, name):
    total = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            total[key] = float(value)
    return total


async def wait_idle(http, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = (await http.get("/metrics")).text
        running = sum(metric(m, "lorad_requests_running").values())
        waiting = sum(metric(m, "lorad_requests_waiting").values())
        if running == 0 and waiting == 0:
            return m
        await asyncio.sleep(0.5)
    T.fail("node not idle two minutes after the load stopped")
    return (await http.get("/metrics")).text


async def main():
    timeout = httpx.Timeout(300.0, connect=10.0)
    limits = httpx.Limits(max_connections=CONCURRENCY + 4)
    async with httpx.AsyncClient(base_url=BASE_URL, timeout=timeout, limits=limits) as http:
        deadline = time.monotonic() + DURATION
        t0 = time.monotonic()
        await asyncio.gather(operator_loop(deadline, http), *(client_loop(i, deadline, http) for i in range(CONCURRENCY)))
        print(f"load: {time.monotonic() - t0:.0f} s", flush=True)
        m = await wait_idle(http)
        blocks = metric(m, "lorad_kv_cache_blocks")
        used = [v for k, v in blocks.items() if 'state="used"' in k]
        # Cached prefixes may stay; a block held with no request running is a leak.
        if not used or used[0] != 0:
            T.fail(f"KV blocks held with nothing running: {blocks}")
        print("kv blocks after load:", blocks, flush=True)
        replayed = mismatched = 0
        for endpoint, body, texts in T.greedy:
            if body["model"] in TOUCHED:
                continue
            body = dict(body, stream=False)
            r = await http.post(PATHS[endpoint], json=body)
            if r.status_code != 200:
                T.fail(f"replay {endpoint} got {r.status_code}: {r.text[:300]}")
                continue
            replayed += 1
            again = text_of(endpoint, r.json())
            if again != texts:
                mismatched += 1
                T.fail(f"batch invariance: {endpoint} {json.dumps(body)[:300]}\n under load: {texts}\n alone:      {again}")
        print(f"replayed {replayed} greedy answers alone, {mismatched} differ", flush=True)
        with open(os.environ.get("SOAK_METRICS", "/dev/null"), "w") as f:
            f.write(m)
    print(json.dumps(dict(sorted(T.counts.items())), indent=1))
    print(f"{len(T.failures)} failures")
    sys.exit(1 if T.failures else 0)


if __name__ == "__main__":
    asyncio.run(main())
