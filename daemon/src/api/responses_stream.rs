//! A streamed `POST /v1/responses`: the chat stream's chunks as the Responses API's typed
//! events (`event: <type>` and `data: {...}` with a `sequence_number`), no `[DONE]`.
//!
//! Order: `response.created`, `response.in_progress`; for a reasoning model's thinking
//! (`--reasoning-parser`), a `reasoning` item with `response.reasoning_text.delta`s, closed
//! when the answer's text or calls begin; for text, `response.output_item.added`
//! (a message), `response.content_part.added`, `response.output_text.delta`s; for each tool
//! call, the message closed first, then `response.output_item.added` (a function call) and
//! `response.function_call_arguments.delta`s; at the end each open item is closed (`...done`
//! events) and `response.completed` (or `response.incomplete`, cut by `max_output_tokens`)
//! carries the whole response with its usage. A failure mid-stream is `response.failed`.

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::responses::{
    Echoed, call_item, extras, item_id, message_item, reasoning_item, response, status, usage,
};

/// What the stream has opened and what the response will hold.
struct Builder {
    echoed: Echoed,
    id: String,
    created: Option<Value>,
    seq: u64,
    /// Closed output items.
    output: Vec<Value>,
    /// The open reasoning item: its id and text so far.
    thought: Option<(String, String)>,
    /// The open message: its id and text so far.
    text: Option<(String, String)>,
    /// The open call: id, call id, name, arguments so far.
    call: Option<(String, String, String, String)>,
    finish: Option<String>,
    /// The final chunk (usage, attribution, receipt).
    last: Value,
}

impl Builder {
    fn event(&mut self, kind: &str, mut data: Value) -> Event {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        Event::default().event(kind).data(data.to_string())
    }

    fn snapshot(&self, status: &str) -> Value {
        response(&self.id, self.created.clone(), &self.echoed, status, self.output.clone())
    }

    fn next_index(&self) -> usize {
        self.output.len()
    }

    /// Announces `item` at the next output index with its one content part, `part`, empty.
    fn open_item(&mut self, item: Value, part: Value, out: &mut Vec<Event>) {
        let i = self.next_index();
        let id = item["id"].clone();
        out.push(
            self.event("response.output_item.added", json!({"output_index": i, "item": item})),
        );
        out.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": i, "content_index": 0, "part": part}),
        ));
    }

    /// Ends the open item `item`: `kind` (its text's `.done` event, with `done`'s fields), its
    /// one content part (as the finished item holds it), then the item itself, which joins the
    /// output.
    fn close_item(&mut self, kind: &str, mut done: Value, item: Value, out: &mut Vec<Event>) {
        let i = self.next_index();
        let id = item["id"].clone();
        for (k, v) in
            [("item_id", id.clone()), ("output_index", json!(i)), ("content_index", json!(0))]
        {
            done[k] = v;
        }
        out.push(self.event(kind, done));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": id, "output_index": i, "content_index": 0, "part": item["content"][0]}),
        ));
        out.push(self.event("response.output_item.done", json!({"output_index": i, "item": item})));
        self.output.push(item);
    }

    /// Opens the reasoning item if it is not open, then sends `delta`.
    fn thought(&mut self, delta: &str, out: &mut Vec<Event>) {
        if self.thought.is_none() {
            let id = item_id("rs", &self.id, self.next_index());
            let item = json!({"type": "reasoning", "id": id, "status": "in_progress", "summary": [], "content": []});
            self.open_item(item, json!({"type": "reasoning_text", "text": ""}), out);
            self.thought = Some((id, String::new()));
        }
        let i = self.next_index();
        if let Some((id, text)) = self.thought.as_mut() {
            text.push_str(delta);
            let id = id.clone();
            out.push(self.event(
                "response.reasoning_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": 0, "delta": delta}),
            ));
        }
    }

    fn close_thought(&mut self, out: &mut Vec<Event>) {
        let Some((id, text)) = self.thought.take() else { return };
        let item = reasoning_item(&id, &text, "completed");
        self.close_item("response.reasoning_text.done", json!({"text": text}), item, out);
    }

    /// Opens the message if it is not open, then sends `delta`.
    fn text(&mut self, delta: &str, out: &mut Vec<Event>) {
        self.close_thought(out);
        if self.text.is_none() {
            let id = item_id("msg", &self.id, self.next_index());
            let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
            let part =
                json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
            self.open_item(item, part, out);
            self.text = Some((id, String::new()));
        }
        let i = self.next_index();
        if let Some((id, text)) = self.text.as_mut() {
            text.push_str(delta);
            let id = id.clone();
            out.push(self.event(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": 0, "delta": delta, "logprobs": []}),
            ));
        }
    }

    fn close_text(&mut self, out: &mut Vec<Event>) {
        let Some((id, text)) = self.text.take() else { return };
        let item = message_item(&id, &text, "completed");
        let done = json!({"text": text, "logprobs": []});
        self.close_item("response.output_text.done", done, item, out);
    }

    fn close_call(&mut self, out: &mut Vec<Event>) {
        let Some((id, call_id, name, args)) = self.call.take() else { return };
        let i = self.next_index();
        out.push(self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": i, "name": name, "arguments": args}),
        ));
        let item = call_item(&id, &call_id, &name, &args, "completed");
        out.push(self.event("response.output_item.done", json!({"output_index": i, "item": item})));
        self.output.push(item);
    }

    /// A chat tool-call delta: a new call (it has an id) or more of the open one's arguments.
    fn call(&mut self, c: &Value, out: &mut Vec<Event>) {
        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
        if let Some(call_id) = c.get("id").and_then(Value::as_str) {
            self.close_thought(out);
            self.close_text(out);
            self.close_call(out);
            let id = item_id("fc", &self.id, self.next_index());
            let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
            let item = call_item(&id, call_id, name, "", "in_progress");
            let i = self.next_index();
            out.push(
                self.event("response.output_item.added", json!({"output_index": i, "item": item})),
            );
            self.call = Some((id, call_id.to_owned(), name.to_owned(), String::new()));
        }
        let i = self.next_index();
        if let Some((id, _, _, so_far)) = self.call.as_mut()
            && !args.is_empty()
        {
            so_far.push_str(args);
            let id = id.clone();
            out.push(self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": i, "delta": args}),
            ));
        }
    }

    /// One chat chunk's events.
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Event>) {
        if self.id.is_empty() {
            self.id = chunk.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            self.created = chunk.get("created").cloned();
            let r = self.snapshot("in_progress");
            out.push(self.event("response.created", json!({"response": r})));
            out.push(self.event("response.in_progress", json!({"response": r})));
        }
        if let Some(choice) = chunk.pointer("/choices/0") {
            if let Some(thought) =
                choice.pointer("/delta/reasoning_content").and_then(Value::as_str)
                && !thought.is_empty()
            {
                self.thought(thought, out);
            }
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                // Text after a call would be a new message; calls end answers, so none comes.
                self.text(text, out);
            }
            for c in
                choice.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten()
            {
                self.call(c, out);
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(f.to_owned());
                self.last = chunk.clone();
            }
        }
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            self.last["usage"] = chunk["usage"].clone();
        }
    }

    /// The closing events.
    fn end(&mut self, out: &mut Vec<Event>) {
        self.close_thought(out);
        self.close_text(out);
        self.close_call(out);
        let status = status(self.finish.as_deref());
        let mut r = self.snapshot(status);
        r["usage"] = usage(self.last.get("usage"));
        let last = self.last.clone();
        extras(&mut r, &last);
        let kind =
            if status == "incomplete" { "response.incomplete" } else { "response.completed" };
        out.push(self.event(kind, json!({"response": r})));
    }

    fn failed(&mut self, message: &str) -> Event {
        let mut r = self.snapshot("failed");
        r["error"] = json!({"code": "server_error", "message": message});
        self.event("response.failed", json!({"response": r}))
    }
}

/// The events of `chat` (a chat completion SSE response).
pub(crate) fn respond(chat: Response, echoed: Echoed) -> Response {
    let mut body = chat.into_body().into_data_stream();
    let mut b = Builder {
        echoed,
        id: String::new(),
        created: None,
        seq: 0,
        output: Vec::new(),
        thought: None,
        text: None,
        call: None,
        finish: None,
        last: Value::Null,
    };
    let events = async_stream::stream! {
        let mut pending = String::new();
        let mut ended = false;
        'read: while let Some(bytes) = body.next().await {
            let Ok(bytes) = bytes else { break };
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(at) = pending.find("\n\n") {
                let frame: String = pending.drain(..at + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data == "[DONE]" {
                    let mut out = Vec::new();
                    b.end(&mut out);
                    for e in out {
                        yield e;
                    }
                    ended = true;
                    break 'read;
                }
                let Ok(chunk) = serde_json::from_str::<Value>(&data) else { continue };
                if let Some(err) = chunk.get("error") {
                    let message = err.get("message").and_then(Value::as_str).unwrap_or("generation failed");
                    yield b.failed(message);
                    ended = true;
                    break 'read;
                }
                let mut out = Vec::new();
                b.chunk(&chunk, &mut out);
                for e in out {
                    yield e;
                }
            }
        }
        if !ended {
            yield b.failed("the answer stream ended early");
        }
    };
    Sse::new(events.map(Ok::<_, std::convert::Infallible>)).into_response()
}
