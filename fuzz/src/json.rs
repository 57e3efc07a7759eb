//! [`JsonMutator`]: mutations of a JSON document as a tree, so that most mutated inputs still
//! parse and reach the code behind the parser (schema compilation, config validation).

use serde_json::{Map, Number, Value};

use crate::rng::Rng;

/// Derives mutated JSON documents from valid ones, deterministically from its seed.
#[derive(Debug, Clone)]
pub struct JsonMutator {
    rng: Rng,
    keys: Vec<String>,
}

impl JsonMutator {
    /// A mutator drawing from `seed`; `keys` are the object keys the format gives meaning to,
    /// which mutations insert with random values.
    pub fn new<I, K>(seed: u64, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        JsonMutator { rng: Rng::new(seed), keys: keys.into_iter().map(Into::into).collect() }
    }

    /// A mutated copy of `doc`: one to three stacked mutations.
    pub fn mutate(&mut self, doc: &Value) -> Value {
        let mut out = doc.clone();
        let rounds = 1 + self.rng.below(3);
        for _ in 0..rounds {
            let donor = self.pick_node(&out).clone();
            let n = count_nodes(&out);
            let target = self.rng.below(n);
            if let Some(node) = nth_node(&mut out, target) {
                self.mutate_node(node, donor);
            }
        }
        out
    }

    /// A copy of a uniformly chosen node of `doc`.
    fn pick_node<'a>(&mut self, doc: &'a Value) -> &'a Value {
        let n = count_nodes(doc);
        let mut i = self.rng.below(n);
        find_nth(doc, &mut i).unwrap_or(doc)
    }

    fn mutate_node(&mut self, node: &mut Value, donor: Value) {
        match self.rng.below(9) {
            0 | 1 => *node = self.interesting(),
            2 => *node = donor,
            3 => {
                // Nesting, sometimes deep: parsers and compilers recurse on it.
                let depth = if self.rng.one_in(4) { 1 + self.rng.below(200) } else { 1 };
                for _ in 0..depth {
                    let inner = std::mem::take(node);
                    *node = if self.rng.one_in(2) {
                        Value::Array(vec![inner])
                    } else {
                        let key = self.key();
                        Value::Object(Map::from_iter([(key, inner)]))
                    };
                }
            }
            4 => match node {
                Value::Object(map) if !map.is_empty() => {
                    let i = self.rng.below(map.len());
                    let key = map.keys().nth(i).cloned().unwrap_or_default();
                    map.remove(&key);
                }
                Value::Array(items) if !items.is_empty() => {
                    let i = self.rng.below(items.len());
                    items.remove(i);
                }
                other => *other = Value::Null,
            },
            5 => match node {
                Value::Object(map) => {
                    let key = self.key();
                    let value = if self.rng.one_in(2) { donor } else { self.interesting() };
                    map.insert(key, value);
                }
                Value::Array(items) => {
                    let times = if self.rng.one_in(4) { 1 + self.rng.below(1000) } else { 1 };
                    let item = items.first().cloned().unwrap_or(donor);
                    items.extend(std::iter::repeat_n(item, times));
                }
                other => *other = donor,
            },
            6 => {
                if let Value::Number(n) = node {
                    *node = self.nudge(n);
                } else {
                    *node = self.interesting();
                }
            }
            7 => {
                // A value of another type where the format expects this one.
                *node = match node {
                    Value::String(s) => s.parse::<f64>().map_or(Value::Null, Value::from),
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::Bool(b) => Value::from(u8::from(*b)),
                    Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
                    Value::Object(map) => Value::Array(map.values().cloned().collect()),
                    Value::Null => Value::Bool(true),
                };
            }
            _ => {
                if let Value::String(s) = node {
                    self.mutate_string(s);
                } else {
                    *node = Value::String(self.key());
                }
            }
        }
    }

    fn key(&mut self) -> String {
        if self.keys.is_empty() || self.rng.one_in(8) {
            return ["", "a", "\u{0}", "é", "$ref", "__proto__"][self.rng.below(6)].to_owned();
        }
        self.rng.pick(&self.keys).clone()
    }

    fn interesting(&mut self) -> Value {
        match self.rng.below(18) {
            0 => Value::Null,
            1 => Value::Bool(self.rng.one_in(2)),
            2 => Value::from(0),
            3 => Value::from(-1),
            4 => Value::from(u64::MAX),
            5 => Value::from(i64::MIN),
            6 => Value::from(1u64 << 32),
            7 => Value::from(f64::MAX),
            8 => Value::from(-0.5),
            9 => Value::from(1e-300),
            10 => Value::String(String::new()),
            11 => Value::String("x".repeat(1 + self.rng.below(70_000))),
            12 => Value::String("\u{0}\u{7f}\u{80}\u{10FFFF}\u{FEFF}".into()),
            13 => Value::Array(Vec::new()),
            14 => Value::Object(Map::new()),
            15 => Value::from(self.rng.below(64)),
            16 => Value::String(self.key()),
            _ => Value::from(self.rng.next_u64() as i64),
        }
    }

    fn nudge(&mut self, n: &Number) -> Value {
        let f = n.as_f64().unwrap_or(0.0);
        match self.rng.below(5) {
            0 => n.as_i64().map_or(Value::from(f + 1.0), |i| Value::from(i.wrapping_add(1))),
            1 => n.as_i64().map_or(Value::from(f - 1.0), |i| Value::from(i.wrapping_sub(1))),
            2 => Value::from(-f),
            3 => Value::from(f * 1e6),
            _ => Value::from(f + 0.5),
        }
    }

    fn mutate_string(&mut self, s: &mut String) {
        let mut bytes = std::mem::take(s).into_bytes();
        match self.rng.below(4) {
            0 => bytes.clear(),
            1 if !bytes.is_empty() => {
                let at = self.rng.below(bytes.len());
                bytes.truncate(at);
            }
            2 => {
                let times = 1 + self.rng.below(2000);
                bytes = bytes.repeat(times.min(1 + 100_000 / bytes.len().max(1)));
            }
            _ => {
                let at = self.rng.below(bytes.len() + 1);
                let piece =
                    ["(", ")", "[", "]", "{", "}", "*", "+", "?", "|", "\\", "^", "$", ".*"];
                bytes.splice(at..at, self.rng.pick(&piece).bytes());
            }
        }
        *s = String::from_utf8_lossy(&bytes).into_owned();
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `i`-th node in pre-order (counting `i` down as it walks).
fn find_nth<'a>(v: &'a Value, i: &mut usize) -> Option<&'a Value> {
    if *i == 0 {
        return Some(v);
    }
    *i -= 1;
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => Box::new(map.values()),
        _ => return None,
    };
    children.into_iter().find_map(|c| find_nth(c, i))
}

fn nth_node(v: &mut Value, mut i: usize) -> Option<&mut Value> {
    fn walk<'a>(v: &'a mut Value, i: &mut usize) -> Option<&'a mut Value> {
        if *i == 0 {
            return Some(v);
        }
        *i -= 1;
        match v {
            Value::Array(items) => items.iter_mut().find_map(|c| walk(c, i)),
            Value::Object(map) => map.values_mut().find_map(|c| walk(c, i)),
            _ => None,
        }
    }
    walk(v, &mut i)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::JsonMutator;

    #[test]
    fn deterministic_and_reaches_every_node() {
        let doc = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "n": [1, 2]});
        let run = |seed| {
            let mut m = JsonMutator::new(seed, ["minimum", "items"]);
            (0..300).map(|_| m.mutate(&doc)).collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert!(a.iter().filter(|d| **d != doc).count() > 250);
        let text: Vec<String> = a.iter().map(|d| d.to_string()).collect();
        assert!(text.iter().any(|t| t.contains("minimum")));
        // The deepest leaf gets mutated too.
        assert!(a.iter().any(|d| d["properties"]["a"]["type"] != "integer"));
    }
}
