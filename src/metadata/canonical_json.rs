//! Canonical JSON for metadata signatures: compact, object keys sorted (by UTF-8 bytes) at every level.
//!
//! Written out explicitly instead of relying on `serde_json::Map` being a `BTreeMap`: that depends on the
//! `preserve_order` feature not being switched on anywhere in the dependency graph, which a signature
//! must not silently depend on.

use serde_json::Value;

/// Serialises `value` compactly with object keys sorted at every level. Strings are escaped as
/// `serde_json` escapes them (`/` is not escaped; non-ASCII is written as UTF-8), which is what
/// Nextcloud's clients produce.
pub fn to_canonical_string(value: &Value) -> String {
    let mut output = String::new();
    write_value(value, &mut output);
    output
}

fn write_value(value: &Value, output: &mut String) {
    match value {
        Value::Null => output.push_str("null"),
        Value::Bool(flag) => output.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => output.push_str(&number.to_string()),
        Value::String(text) => write_string(text, output),
        Value::Array(items) => {
            output.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    output.push(',');
                }
                write_value(item, output);
            }
            output.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));
            output.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    output.push(',');
                }
                write_string(key, output);
                output.push(':');
                write_value(item, output);
            }
            output.push('}');
        }
    }
}

fn write_string(text: &str, output: &mut String) {
    output.push_str(&serde_json::to_string(text).expect("serialising a string cannot fail"));
}
