//! Nextcloud's PROPFIND responses parse into exactly the fields its test suite expects.

mod common;

use cloakfs::storage::webdav::propfind::{parse_multistatus, percent_decode, PropfindError};
use common::{text, v2, vector_text};
use serde_json::Value;

#[test]
fn every_propfind_fixture_yields_the_expected_fields() {
    let vectors = v2();
    let cases = vectors["propfind"].as_object().unwrap();
    assert_eq!(cases.len(), 6);
    for (case, expectation) in cases {
        let xml = vector_text(expectation["file"].as_str().unwrap());
        let entries = parse_multistatus(xml.as_bytes()).unwrap_or_else(|error| panic!("{case}: {error}"));
        let expected = expectation["expected_responses"].as_array().unwrap();
        assert_eq!(entries.len(), expected.len(), "{case}");
        for (entry, want) in entries.iter().zip(expected) {
            assert_eq!(entry.href, want["href"].as_str().unwrap(), "{case}");
            assert_eq!(entry.file_id, want["fileid"].as_u64(), "{case} {}", entry.href);
            assert_eq!(entry.is_collection, want["is_collection"].as_bool().unwrap(), "{case} {}", entry.href);
            let flag = |value: &Value| value.as_str().map(|text| text == "1");
            assert_eq!(entry.is_encrypted, flag(&want["nc_is_encrypted"]), "{case} {}", entry.href);
            assert_eq!(entry.e2ee_is_encrypted, flag(&want["nc_e2ee_is_encrypted"]), "{case} {}", entry.href);
            assert_eq!(entry.size, want["size"].as_u64(), "{case} {}", entry.href);
            assert_eq!(entry.content_length, want["getcontentlength"].as_u64(), "{case} {}", entry.href);
            let referenced =
                |value: &Value| value.as_str().map(|pointer| text(&vectors, &format!("/{pointer}")).to_owned());
            assert_eq!(entry.e2ee_metadata, referenced(&want["e2ee_metadata"]), "{case} {}", entry.href);
            assert_eq!(
                entry.e2ee_metadata_signature,
                referenced(&want["e2ee_metadata_signature"]),
                "{case} {}",
                entry.href
            );
        }
    }
}

#[test]
fn root_folder_children_are_exactly_the_uids_in_its_metadata() {
    let vectors = v2();
    let entries = parse_multistatus(vector_text("propfind-root-folder.xml").as_bytes()).unwrap();
    let mut children: Vec<String> = entries[1..].iter().map(|entry| entry.name()).collect();
    children.sort();
    let plaintext = &vectors["root_folder_expected_plaintext"];
    let mut uids: Vec<String> = plaintext["files"].as_object().unwrap().keys().cloned().collect();
    uids.extend(plaintext["folders"].as_object().unwrap().keys().cloned());
    uids.sort();
    assert_eq!(children, uids);
    assert_eq!(entries[0].name(), "New folder");
    assert!(entries[0].etag.as_deref().unwrap().starts_with('"'));
}

#[test]
fn malformed_propfind_bodies_are_errors_not_panics() {
    for body in [
        &b""[..],
        b"<html><body>Login</body></html>",
        b"<d:multistatus xmlns:d=\"DAV:\"><d:response><d:href>/x</d:href>",
        b"<d:multistatus xmlns:d=\"DAV:\"><d:response></d:response></d:multistatus>",
        b"<d:multistatus xmlns:d=\"DAV:\"><d:response><d:href>/x</d:href><d:propstat><d:prop><oc:fileid xmlns:oc=\"http://owncloud.org/ns\">12a</oc:fileid></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>",
        b"\xff\xfe<\x00",
    ] {
        let result = parse_multistatus(body);
        assert!(result.is_err(), "{:?} parsed as {result:?}", String::from_utf8_lossy(body));
    }
    assert!(matches!(parse_multistatus(b"<a xmlns=\"DAV:\"/>"), Err(PropfindError::Shape(_))));
}

#[test]
fn prefixes_are_resolved_by_namespace_not_by_name() {
    let body = br#"<multistatus xmlns="DAV:" xmlns:x="http://nextcloud.org/ns" xmlns:y="http://owncloud.org/ns">
      <response><href>/a/b%20c/</href><propstat><prop>
        <resourcetype><collection/></resourcetype><y:fileid>7</y:fileid><x:is-encrypted>1</x:is-encrypted>
        <x:e2ee-metadata>{"a":"&lt;&amp;&gt;"}</x:e2ee-metadata>
      </prop><status>HTTP/1.1 200 OK</status></propstat>
      <propstat><prop><y:fileid>9</y:fileid></prop><status>HTTP/1.1 404 Not Found</status></propstat></response>
    </multistatus>"#;
    let entries = parse_multistatus(body).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].file_id, Some(7), "the 404 propstat is ignored");
    assert!(entries[0].is_collection);
    assert_eq!(entries[0].is_encrypted, Some(true));
    assert_eq!(entries[0].e2ee_metadata.as_deref(), Some(r#"{"a":"<&>"}"#));
    assert_eq!(entries[0].name(), "b c");
    assert_eq!(percent_decode("%e2%82%ac%zz%"), "€%zz%");
}
