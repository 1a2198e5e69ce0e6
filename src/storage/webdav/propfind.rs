//! Parsing WebDAV PROPFIND `multistatus` responses, including Nextcloud's end-to-end encryption properties.
//!
//! Namespace-aware (a server may choose any prefixes); only properties in a propstat whose status is 200
//! are taken. Text is unescaped by the XML parser; nothing here parses XML by string matching.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

/// The WebDAV namespace.
pub const DAV_NS: &str = "DAV:";
/// ownCloud's namespace (`oc:`), used by Nextcloud for file ids and sizes.
pub const OC_NS: &str = "http://owncloud.org/ns";
/// Nextcloud's namespace (`nc:`), used for the end-to-end encryption properties.
pub const NC_NS: &str = "http://nextcloud.org/ns";

/// The properties a listing of any WebDAV server asks for.
pub const PLAIN_PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getetag/><d:getcontentlength/><d:getlastmodified/></d:prop></d:propfind>"#;

/// The properties cloakfs asks a Nextcloud server for in every PROPFIND (its file ids and end-to-end
/// encryption properties too).
pub const PROPFIND_REQUEST_BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">
  <d:prop>
    <d:resourcetype/>
    <d:getetag/>
    <d:getcontentlength/>
    <d:getlastmodified/>
    <oc:fileid/>
    <oc:size/>
    <nc:is-encrypted/>
    <nc:e2ee-is-encrypted/>
    <nc:e2ee-metadata/>
    <nc:e2ee-metadata-signature/>
  </d:prop>
</d:propfind>"#;

/// One `d:response` of a multistatus, with the properties cloakfs uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropfindEntry {
    /// The `d:href`, trimmed, still percent-encoded as the server sent it.
    pub href: String,
    /// `oc:fileid`: the numeric id used by the end-to-end encryption API.
    pub file_id: Option<u64>,
    /// Whether `d:resourcetype` holds `d:collection`.
    pub is_collection: bool,
    /// `nc:is-encrypted` (folders): whether the folder is flagged end-to-end encrypted.
    pub is_encrypted: Option<bool>,
    /// `nc:e2ee-is-encrypted` (files and folders).
    pub e2ee_is_encrypted: Option<bool>,
    /// `oc:size`.
    pub size: Option<u64>,
    /// `d:getcontentlength`.
    pub content_length: Option<u64>,
    /// `d:getetag`, with its quotes.
    pub etag: Option<String>,
    /// `d:getlastmodified`, as sent (RFC 1123 date).
    pub last_modified: Option<String>,
    /// `nc:e2ee-metadata`: the folder's metadata JSON.
    pub e2ee_metadata: Option<String>,
    /// `nc:e2ee-metadata-signature`: its base64 CMS signature.
    pub e2ee_metadata_signature: Option<String>,
}

impl PropfindEntry {
    /// The last path segment of the href, percent-decoded (for entries in encrypted folders: the
    /// server-side name).
    pub fn name(&self) -> String {
        let trimmed = self.href.trim_end_matches('/');
        let last = trimmed.rsplit('/').next().unwrap_or_default();
        percent_decode(last)
    }
}

/// Why a PROPFIND response could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum PropfindError {
    /// Not well-formed XML.
    #[error("malformed PROPFIND XML: {0}")]
    Xml(String),
    /// Well-formed but not a WebDAV multistatus.
    #[error("unexpected PROPFIND response: {0}")]
    Shape(&'static str),
    /// A numeric property is not a number.
    #[error("PROPFIND property {property} is not a valid number")]
    BadNumber {
        /// The property's local name.
        property: &'static str,
    },
}

type PropertyName = (String, String);

#[derive(Default)]
struct PropstatInProgress {
    properties: HashMap<PropertyName, String>,
    is_collection: bool,
    status: String,
}

/// Parses a PROPFIND multistatus body.
pub fn parse_multistatus(xml: &[u8]) -> Result<Vec<PropfindEntry>, PropfindError> {
    let mut reader = NsReader::from_reader(xml);
    reader.config_mut().expand_empty_elements = true;
    let mut buffer = Vec::new();
    let mut stack: Vec<PropertyName> = Vec::new();
    let mut entries = Vec::new();
    let mut saw_multistatus = false;
    let mut href = String::new();
    let mut accepted: Option<PropstatInProgress> = None;
    let mut propstat: Option<PropstatInProgress> = None;
    let mut text = String::new();
    loop {
        let (resolved, event) =
            reader.read_resolved_event_into(&mut buffer).map_err(|error| PropfindError::Xml(error.to_string()))?;
        let namespace = match resolved {
            ResolveResult::Bound(Namespace(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            _ => String::new(),
        };
        match event {
            Event::Start(start) => {
                let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let depth = stack.len();
                let in_dav = namespace == DAV_NS;
                match (depth, in_dav, local.as_str()) {
                    (0, true, "multistatus") => saw_multistatus = true,
                    (0, _, _) => return Err(PropfindError::Shape("root element is not d:multistatus")),
                    (1, true, "response") => {
                        href.clear();
                        accepted = Some(PropstatInProgress::default());
                    }
                    (2, true, "propstat") => propstat = Some(PropstatInProgress::default()),
                    (5, true, "collection") if stack_ends_with(&stack, "resourcetype") => {
                        if let Some(current) = propstat.as_mut() {
                            current.is_collection = true;
                        }
                    }
                    _ => {}
                }
                text.clear();
                stack.push((namespace, local));
            }
            Event::Text(content) => {
                text.push_str(&content.unescape().map_err(|error| PropfindError::Xml(error.to_string()))?);
            }
            Event::CData(content) => text.push_str(&String::from_utf8_lossy(&content.into_inner())),
            Event::End(_) => {
                let (element_namespace, local) = stack.pop().ok_or(PropfindError::Shape("unbalanced XML"))?;
                let depth = stack.len();
                let in_dav = element_namespace == DAV_NS;
                match (depth, in_dav, local.as_str()) {
                    (2, true, "href") => href = text.trim().to_owned(),
                    (3, true, "status") => {
                        if let Some(current) = propstat.as_mut() {
                            current.status = text.trim().to_owned();
                        }
                    }
                    (4, _, _) if stack_ends_with(&stack, "prop") => {
                        if let Some(current) = propstat.as_mut() {
                            current.properties.insert((element_namespace, local), text.clone());
                        }
                    }
                    (2, true, "propstat") => {
                        let finished = propstat.take().ok_or(PropfindError::Shape("propstat outside a response"))?;
                        if status_is_ok(&finished.status) {
                            if let Some(target) = accepted.as_mut() {
                                target.is_collection |= finished.is_collection;
                                target.properties.extend(finished.properties);
                            }
                        }
                    }
                    (1, true, "response") => {
                        let finished = accepted.take().ok_or(PropfindError::Shape("response without content"))?;
                        if href.is_empty() {
                            return Err(PropfindError::Shape("response without d:href"));
                        }
                        entries.push(entry_from(std::mem::take(&mut href), finished)?);
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof if stack.is_empty() => break,
            Event::Eof => return Err(PropfindError::Xml("document ends inside an element (truncated)".into())),
            _ => {}
        }
        buffer.clear();
    }
    if !saw_multistatus {
        return Err(PropfindError::Shape("no d:multistatus element"));
    }
    Ok(entries)
}

fn stack_ends_with(stack: &[PropertyName], local: &str) -> bool {
    stack.last().is_some_and(|(namespace, name)| namespace == DAV_NS && name == local)
}

fn status_is_ok(status: &str) -> bool {
    status.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2'))
}

fn entry_from(href: String, propstat: PropstatInProgress) -> Result<PropfindEntry, PropfindError> {
    let properties = propstat.properties;
    let get =
        |namespace: &str, local: &str| properties.get(&(namespace.to_owned(), local.to_owned())).map(|v| v.trim());
    let number = |namespace: &str, local: &'static str| -> Result<Option<u64>, PropfindError> {
        match get(namespace, local) {
            None | Some("") => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| PropfindError::BadNumber { property: local }),
        }
    };
    let flag = |namespace: &str, local: &str| match get(namespace, local) {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") | Some("") => Some(false),
        _ => None,
    };
    let non_empty =
        |namespace: &str, local: &str| get(namespace, local).filter(|value| !value.is_empty()).map(str::to_owned);
    Ok(PropfindEntry {
        file_id: number(OC_NS, "fileid")?,
        is_collection: propstat.is_collection,
        is_encrypted: flag(NC_NS, "is-encrypted"),
        e2ee_is_encrypted: flag(NC_NS, "e2ee-is-encrypted"),
        size: number(OC_NS, "size")?,
        content_length: number(DAV_NS, "getcontentlength")?,
        etag: non_empty(DAV_NS, "getetag"),
        last_modified: non_empty(DAV_NS, "getlastmodified"),
        e2ee_metadata: non_empty(NC_NS, "e2ee-metadata"),
        e2ee_metadata_signature: non_empty(NC_NS, "e2ee-metadata-signature"),
        href,
    })
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are; invalid UTF-8 is replaced).
pub fn percent_decode(text: &str) -> String {
    fn hex_value(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|digit| digit as u8)
    }
    let bytes = text.as_bytes();
    let mut output = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex_value(bytes[index + 1]), hex_value(bytes[index + 2])) {
                output.push(high << 4 | low);
                index += 3;
                continue;
            }
        }
        output.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&output).into_owned()
}
