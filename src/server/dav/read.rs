//! GET and HEAD: a file's bytes, whole or one byte range, streamed from the blob store.

use super::*;

/// A parsed `Range: bytes=...` header: `Ok(None)` for the whole file.
pub(super) fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|value| value.to_str().ok()) else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: answer with the whole file, as RFC 9110 permits
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().map_err(|_| ())?;
            if suffix == 0 {
                return Err(());
            }
            (size.saturating_sub(suffix), size.checked_sub(1).ok_or(())?)
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

pub(super) async fn get(state: &Shared, user: &str, segments: &[String], request: Request) -> ApiResult<Response> {
    let node = readable(state, user, segments)?;
    if node.is_dir {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "cannot GET a folder"));
    }
    let blob = node.blob.clone().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
    let mut file = tokio::fs::File::open(state.blobs.path(&blob)).await.map_err(|error| {
        tracing::error!(file_id = node.id, %error, "blob missing");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "file content missing on the server")
    })?;
    let size = node.size;
    let range = match parse_range(request.headers(), size) {
        Ok(range) => range,
        Err(()) => {
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))])
                .into_response())
        }
    };
    let (status, start, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, header_value(&format!("\"{}\"", node.etag)));
    headers.insert("OC-FileId", header_value(&oc_id(node.id)));
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{}/{size}", start + length - 1)));
    }
    if request.method() == Method::HEAD {
        return Ok((status, headers).into_response());
    }
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file"))?;
    // Blobs are read whole, front to back: a doubled read-ahead window when they come from disk.
    crate::platform::advise_sequential(&file);
    let reader = file.take(length);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20);
    Ok((status, headers, Body::from_stream(stream)).into_response())
}

pub(super) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
