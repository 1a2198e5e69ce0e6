//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// Where Nextcloud's interop vectors live: `$CLOAKFS_VECTORS_DIR`, else `../shared/interop/nextcloud` next to
/// the checkout. The vectors are AGPL/GPL data and are deliberately not copied into this repository.
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("CLOAKFS_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/interop/nextcloud"));
    assert!(
        dir.join("vectors-v2.json").is_file(),
        "Nextcloud test vectors not found in {}: set CLOAKFS_VECTORS_DIR to the folder holding vectors-v2.json",
        dir.display()
    );
    dir
}

/// Reads a file from the vectors folder as text.
pub fn vector_text(name: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(name)).unwrap_or_else(|error| panic!("reading {name}: {error}"))
}

/// Parses `vectors-v2.json`.
pub fn v2() -> Value {
    serde_json::from_str(&vector_text("vectors-v2.json")).expect("vectors-v2.json is JSON")
}

/// Parses `vectors-v1.2.json`.
pub fn v1_2() -> Value {
    serde_json::from_str(&vector_text("vectors-v1.2.json")).expect("vectors-v1.2.json is JSON")
}

/// A string field, panicking with the path when absent.
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("vector field {pointer} missing"))
}

/// Decodes standard base64.
pub fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).expect("valid base64 in vector")
}
