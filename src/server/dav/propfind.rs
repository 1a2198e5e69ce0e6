//! PROPFIND: the folder and its children (depth 0 or 1) with Nextcloud's properties, the end-to-end
//! encryption flag and metadata included.

use super::*;

pub(super) async fn propfind(state: &Shared, user: &str, segments: &[String], request: Request) -> ApiResult<Response> {
    let depth = match request.headers().get("depth").and_then(|value| value.to_str().ok()) {
        Some("0") => 0,
        Some("1") | None => 1,
        Some(_) => return Err(ApiError::new(StatusCode::FORBIDDEN, "PROPFIND with Depth infinity is not allowed")),
    };
    let e2ee = e2ee_supported(request.headers());
    let body = axum::body::to_bytes(request.into_body(), MAX_PROPFIND_BODY)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PROPFIND body too large"))?;
    check_xml(&body)?;
    let connection = state.store.lock();
    let target = tree::resolve_for_read(&connection, user, segments)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
    if !tree::may(&connection, user, &target, tree::Access::Read)? {
        // A file-drop share shows its folder (with the metadata, for the members' certificates), not its content.
        let drop_root = tree::may(&connection, user, &target, tree::Access::Drop)?
            && crate::server::shares::is_mount_of(&connection, user, &target)?;
        if !drop_root || depth != 0 {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "the share does not allow reading"));
        }
    }
    let target_encrypted = tree::in_encrypted_tree(&connection, &target)?;
    if target_encrypted && target.is_dir && !e2ee {
        return Err(client_not_allowed());
    }
    let mut entries = vec![(segments.to_vec(), target.clone(), target_encrypted)];
    if depth == 1 && target.is_dir {
        let mut children = tree::children(&connection, target.id)?;
        if target.parent.is_none() {
            // The user's root also shows the folders shared with them, under their mount names.
            children.extend(crate::server::shares::mounts(&connection, user)?);
        }
        for child in children {
            let mut child_segments = segments.to_vec();
            child_segments.push(child.listed_name().to_owned());
            let encrypted = target_encrypted || child.encrypted;
            entries.push((child_segments, child, encrypted));
        }
    }
    let mut writer = Writer::new(Vec::with_capacity(512 * entries.len()));
    write_event(&mut writer, Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
    let start = BytesStart::new("d:multistatus").with_attributes([
        ("xmlns:d", "DAV:"),
        ("xmlns:oc", "http://owncloud.org/ns"),
        ("xmlns:nc", "http://nextcloud.org/ns"),
        ("xmlns:s", "http://sabredav.org/ns"),
    ]);
    write_event(&mut writer, Event::Start(start))?;
    for (entry_segments, node, encrypted) in &entries {
        let metadata = if node.is_dir && node.encrypted { locking::metadata(&connection, node.id)? } else { None };
        write_response(&mut writer, &href(user, entry_segments, node.is_dir), node, *encrypted, metadata)?;
    }
    write_event(&mut writer, Event::End(BytesEnd::new("d:multistatus")))?;
    let mut response = (StatusCode::MULTI_STATUS, writer.into_inner()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    Ok(response)
}

/// Refuses a request body that is not well-formed XML (an empty body is allowed: all properties).
pub(super) fn check_xml(body: &Bytes) -> ApiResult<()> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let mut reader = quick_xml::Reader::from_reader(body.as_ref());
    reader.config_mut().check_end_names = true;
    let mut buffer = Vec::new();
    let mut depth = 0usize;
    loop {
        match reader.read_event_into(&mut buffer) {
            Ok(Event::Eof) if depth == 0 => return Ok(()),
            Ok(Event::Eof) => break,
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            Err(_) => break,
        }
        buffer.clear();
    }
    Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed XML in the request body"))
}

pub(super) fn write_event(writer: &mut Writer<Vec<u8>>, event: Event<'_>) -> ApiResult<()> {
    writer.write_event(event).map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "XML writing failed"))
}

pub(super) fn write_response(
    writer: &mut Writer<Vec<u8>>,
    href: &str,
    node: &Node,
    in_encrypted_tree: bool,
    metadata: Option<(String, String)>,
) -> ApiResult<()> {
    let xml_error = |_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "XML writing failed");
    writer
        .create_element("d:response")
        .write_inner_content(|writer| {
            writer.create_element("d:href").write_text_content(BytesText::new(href))?;
            writer.create_element("d:propstat").write_inner_content(|writer| {
                writer.create_element("d:prop").write_inner_content(|writer| {
                    let text = |writer: &mut Writer<Vec<u8>>, name: &str, value: &str| -> std::io::Result<()> {
                        writer.create_element(name).write_text_content(BytesText::new(value))?;
                        Ok(())
                    };
                    if node.is_dir {
                        writer.create_element("d:resourcetype").write_inner_content(|writer| {
                            writer.create_element("d:collection").write_empty()?;
                            Ok(())
                        })?;
                    } else {
                        writer.create_element("d:resourcetype").write_empty()?;
                        text(writer, "d:getcontentlength", &node.size.to_string())?;
                        text(writer, "d:getcontenttype", "application/octet-stream")?;
                    }
                    text(writer, "d:getetag", &format!("\"{}\"", node.etag))?;
                    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(node.mtime.max(0) as u64);
                    text(writer, "d:getlastmodified", &httpdate::fmt_http_date(modified))?;
                    text(writer, "oc:fileid", &node.id.to_string())?;
                    text(writer, "oc:id", &oc_id(node.id))?;
                    text(writer, "oc:size", &node.size.to_string())?;
                    text(writer, "oc:permissions", if node.is_dir { "RGDNVCK" } else { "RGDNVW" })?;
                    if node.is_dir {
                        text(writer, "nc:is-encrypted", if node.encrypted { "1" } else { "0" })?;
                    }
                    text(writer, "nc:e2ee-is-encrypted", if in_encrypted_tree { "1" } else { "0" })?;
                    if let Some((json, signature)) = &metadata {
                        text(writer, "nc:e2ee-metadata", json)?;
                        text(writer, "nc:e2ee-metadata-signature", signature)?;
                    }
                    Ok(())
                })?;
                writer.create_element("d:status").write_text_content(BytesText::new("HTTP/1.1 200 OK"))?;
                Ok(())
            })?;
            Ok(())
        })
        .map_err(xml_error)?;
    Ok(())
}
