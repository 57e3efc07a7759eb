//! Chat templates: turning a conversation into the prompt text a model was fine-tuned on.
//!
//! Hugging Face ships these as Jinja templates. They are rendered with minijinja configured like
//! transformers' own environment (`trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`), plus the handful of Python string/dict methods templates commonly call.

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, State, context};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (templates may accept others).
    pub role: String,
    /// The turn's text.
    pub content: String,
    /// An assistant turn's tool calls (OpenAI's shape), for templates that format them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` turn's answer is to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None }
    }
}

/// Plain ChatML, for models that ship no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const NAME: &str = "chat";

/// How a chat template presents tools to the model, which decides how lorad asks for and reads
/// tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSupport {
    /// The template ignores `tools` (plain ChatML, SmolLM2): lorad describes the tools and the
    /// history's calls itself, in the Hermes format.
    None,
    /// The template describes tools and asks for `<tool_call>{"name", "arguments"}</tool_call>`
    /// (Hermes, Qwen 2.5, SmolLM3).
    Hermes,
    /// The template describes tools and asks for a bare JSON object,
    /// `{"name": ..., "parameters": ...}`, as the whole answer (Llama 3.1, 3.2).
    Llama3Json,
    /// The template describes tools and asks for Mistral's
    /// `[TOOL_CALLS] [{"name", "arguments"}, ...]` (Mistral 7B Instruct v0.3 and its kin), with
    /// call ids of 9 letters and digits.
    Mistral,
    /// The template describes tools and asks for Mistral's newer
    /// `[TOOL_CALLS]name[ARGS]{...}` per call (Mistral Small 3.1 and later, Magistral,
    /// Devstral), with call ids of 9 letters and digits.
    MistralArgs,
    /// The template describes tools with a call syntax lorad does not read.
    Other,
}

/// A compiled chat template, with the `bos_token` / `eos_token` strings it may reference.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    tools: ToolSupport,
}

impl ChatTemplate {
    /// Plain ChatML (`<|im_start|>role\ncontent<|im_end|>\n` per message).
    pub fn chatml() -> Self {
        // The ChatML source is a constant known to compile (a unit test checks it); should that
        // ever break, an empty template is a safer fallback than a panic in a server.
        Self::new(CHATML).unwrap_or_else(|_| Self::from_env(Environment::new()))
    }

    /// Compiles a Hugging Face Jinja chat template. Templates calling `strftime_now` or other
    /// transformers-only globals fail at render time with an error naming the missing function.
    pub fn new(source: &str) -> Result<Self, ModelError> {
        let mut env = Environment::new();
        // transformers renders with trim_blocks and lstrip_blocks; without them the block tags'
        // newlines would leak into prompts.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.set_unknown_method_callback(python_method);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|source| ModelError::Template { source })?;
        let mut t = Self::from_env(env);
        t.tools = t.probe_tools(source);
        Ok(t)
    }

    fn from_env(env: Environment<'static>) -> Self {
        Self { env, bos_token: String::new(), eos_token: String::new(), tools: ToolSupport::None }
    }

    /// Renders a one-message conversation with and without a tool: a template whose output
    /// does not change ignores tools.
    fn probe_tools(&self, source: &str) -> ToolSupport {
        let probe = [ChatMessage::new("user", "lorad tool probe")];
        let tools = serde_json::json!([{"type": "function", "function": {
            "name": "lorad_probe", "description": "probe",
            "parameters": {"type": "object", "properties": {}}}}]);
        let with = self.render_with_tools(&probe, true, Some(&tools));
        match (with, self.render(&probe, true)) {
            (Ok(with), Ok(without)) if with != without => {
                if with.contains("<tool_call>") || source.contains("<tool_call>") {
                    ToolSupport::Hermes
                } else if with.contains("{\"name\": function name, \"parameters\"") {
                    ToolSupport::Llama3Json
                } else if source.contains("[TOOL_CALLS]") && source.contains("[ARGS]") {
                    ToolSupport::MistralArgs
                } else if source.contains("[TOOL_CALLS]") {
                    ToolSupport::Mistral
                } else {
                    ToolSupport::Other
                }
            }
            _ => ToolSupport::None,
        }
    }

    /// How this template presents tools.
    pub fn tool_support(&self) -> ToolSupport {
        self.tools
    }

    /// Sets the `bos_token` / `eos_token` template variables (empty strings when `None`).
    pub fn with_special_tokens(mut self, bos: Option<String>, eos: Option<String>) -> Self {
        self.bos_token = bos.unwrap_or_default();
        self.eos_token = eos.unwrap_or_default();
        self
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the assistant's turn
    /// header, ready for generation.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        self.render_with_tools(messages, add_generation_prompt, None)
    }

    /// [`Self::render`] with the request's tool definitions as the template's `tools` (what
    /// transformers passes): templates that know tools (Qwen 2.5, Llama 3.1, Mistral) describe
    /// them to the model; others ignore them.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, ModelError> {
        let tmpl = self.env.get_template(NAME).map_err(|source| ModelError::Template { source })?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            tools => tools,
        })
        .map_err(|source| ModelError::Template { source })
    }
}

/// transformers' `raise_exception(msg)`: templates use it to reject conversations they cannot
/// format (e.g. roles out of order).
fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("template raised: {msg}")))
}

/// The Python methods chat templates call on strings and dicts (`.strip()`, `.startswith()`,
/// `.items()`, ...), which Jinja2 gets for free from Python and minijinja does not have.
fn python_method(
    _state: &State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let arg_str = |i: usize| -> Result<Option<&str>, Error> {
        match args.get(i) {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{method}() expects a string argument"),
                )
            }),
        }
    };
    if let Some(s) = value.as_str() {
        let chars = arg_str(0)?;
        let strip_set = |c: char| chars.map_or(c.is_whitespace(), |set| set.contains(c));
        return Ok(match method {
            "strip" => Value::from(s.trim_matches(strip_set)),
            "lstrip" => Value::from(s.trim_start_matches(strip_set)),
            "rstrip" => Value::from(s.trim_end_matches(strip_set)),
            "lower" => Value::from(s.to_lowercase()),
            "upper" => Value::from(s.to_uppercase()),
            "startswith" => Value::from(chars.is_some_and(|p| s.starts_with(p))),
            "endswith" => Value::from(chars.is_some_and(|p| s.ends_with(p))),
            "replace" => {
                let (from, to) = (chars.unwrap_or(""), arg_str(1)?.unwrap_or(""));
                Value::from(s.replace(from, to))
            }
            "split" => {
                let parts: Vec<Value> = match chars {
                    Some(sep) => s.split(sep).map(Value::from).collect(),
                    None => s.split_whitespace().map(Value::from).collect(),
                };
                Value::from(parts)
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        });
    }
    match method {
        "items" | "keys" | "values" if value.as_object().is_some() => {
            let mut out = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                out.push(match method {
                    "items" => Value::from(vec![key, item]),
                    "keys" => key,
                    _ => item,
                });
            }
            Ok(Value::from(out))
        }
        "get" => {
            let key = args.first().cloned().unwrap_or(Value::UNDEFINED);
            let found = value.get_item(&key)?;
            Ok(if found.is_undefined() {
                args.get(1).cloned().unwrap_or(Value::from(()))
            } else {
                found
            })
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders() -> Result<(), ModelError> {
        let t = ChatTemplate::new(CHATML)?;
        let out =
            t.render(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "Hi")], true)?;
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = ChatTemplate::chatml().render(&[ChatMessage::new("user", "Hi")], false)?;
        assert_eq!(out, "<|im_start|>user\nHi<|im_end|>\n");
        Ok(())
    }

    #[test]
    fn hf_features() -> Result<(), ModelError> {
        // Expected output produced by Python jinja2 with transformers' settings.
        let src = "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}\n  [{{ m['content'].strip() }}|{% if m.content.startswith(' x') %}yes{% endif %}|{{ {'a': 1}.get('b', 'dflt') }}|{% for k, v in {'k': 1}.items() %}{{ k }}={{ v }}{% endfor %}|{{ m.content.split() | length }}]\n{% endfor %}{{ eos_token }}";
        let t =
            ChatTemplate::new(src)?.with_special_tokens(Some("<s>".into()), Some("</s>".into()));
        let out = t.render(&[ChatMessage::new("user", " x y ")], false)?;
        assert_eq!(out, "<s>  [x y|yes|dflt|k=1|2]\n</s>");
        let e = t.render(&[ChatMessage::new("bad", "")], false).unwrap_err().to_string();
        assert!(e.contains("no bad roles"), "{e}");
        let e = ChatTemplate::new("{% for %}").unwrap_err().to_string();
        assert!(e.contains("chat template"), "{e}");
        Ok(())
    }

    #[test]
    fn tools_and_tool_turns_reach_the_template() -> Result<(), ModelError> {
        // The shape of Qwen 2.5's handling: tool names listed, calls and tool turns formatted.
        let src = "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}{% for m in messages %}{{ m.role }}:{% if m.tool_calls %}{% for c in m.tool_calls %}call {{ c.function.name }}({{ c.function.arguments }}){% endfor %}{% elif m.tool_call_id %}[{{ m.tool_call_id }}] {{ m.content }}{% else %}{{ m.content }}{% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src)?;
        let tools = serde_json::json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(serde_json::json!([
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
        ]));
        let mut answer = ChatMessage::new("tool", "-3 C");
        answer.tool_call_id = Some("call_1".into());
        let out = t.render_with_tools(
            &[ChatMessage::new("user", "Weather in Oslo?"), call, answer],
            false,
            Some(&tools),
        )?;
        assert_eq!(
            out,
            // trim_blocks eats the newline after each block tag, as transformers does.
            "TOOLS:get_weather;user:Weather in Oslo?assistant:call get_weather({\"city\":\"Oslo\"})tool:[call_1] -3 C"
        );
        assert_eq!(t.render(&[ChatMessage::new("user", "x")], false)?, "user:x");
        assert_eq!(t.tool_support(), ToolSupport::Other);
        assert_eq!(ChatTemplate::chatml().tool_support(), ToolSupport::None);
        let hermes = "{% if tools %}<tools>{{ tools | tojson }}</tools> answer with <tool_call>{}</tool_call>{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
        assert_eq!(ChatTemplate::new(hermes)?.tool_support(), ToolSupport::Hermes);
        // The shape of Llama 3.1's: the format asked for in words, in the rendered prompt.
        let llama = "{% if tools %}Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
        assert_eq!(ChatTemplate::new(llama)?.tool_support(), ToolSupport::Llama3Json);
        // The shape of Mistral v0.3's, and of the newer `name[ARGS]{...}` syntax.
        let mistral = "{% for m in messages %}{% if tools and loop.last %}[AVAILABLE_TOOLS] {{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}{% if m.tool_calls %}[TOOL_CALLS] [{% for c in m.tool_calls %}{{ c.function | tojson }}{% endfor %}]{% else %}[INST] {{ m.content }}[/INST]{% endif %}{% endfor %}";
        assert_eq!(ChatTemplate::new(mistral)?.tool_support(), ToolSupport::Mistral);
        let v11 = mistral.replace(
            "{{ c.function | tojson }}",
            "{{ c.function.name }}[ARGS]{{ c.function.arguments }}",
        );
        assert_eq!(ChatTemplate::new(&v11)?.tool_support(), ToolSupport::MistralArgs);
        Ok(())
    }
}
