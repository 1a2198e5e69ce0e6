//! Nextcloud's OCS share API (`files_sharing/api/v1/shares`, user shares) and the file-drop call of the
//! end-to-end encryption API, for [`Sharing`](super::Sharing).

use reqwest::Method;
use serde_json::Value;

use super::NextcloudClient;
use super::{ShareInfo, SharePermissions};
use crate::storage::RemoteError;

/// Base of the share API (OCS v2: the HTTP status is the OCS status).
pub const SHARES_API: &str = "ocs/v2.php/apps/files_sharing/api/v1";

fn share_of(data: &Value, request: &str) -> Result<ShareInfo, RemoteError> {
    let protocol = |reason: &str| RemoteError::Protocol { request: request.to_owned(), reason: reason.to_owned() };
    let id = match data.get("id") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => return Err(protocol("a share without an id")),
    };
    let recipient = data.get("share_with").and_then(Value::as_str).unwrap_or_default().to_owned();
    let permissions = data.get("permissions").and_then(Value::as_i64).unwrap_or_default();
    let share_type = data.get("share_type").and_then(Value::as_i64).unwrap_or(-1);
    Ok(ShareInfo { id, recipient, permissions, is_user_share: share_type == 0 })
}

fn path_of(segments: &[String]) -> String {
    format!("/{}", segments.join("/"))
}

impl NextcloudClient {
    /// `POST /shares`: shares the folder at `path` with user `recipient` (share type 0).
    pub async fn create_user_share(
        &self,
        path: &[String],
        recipient: &str,
        permissions: SharePermissions,
    ) -> Result<ShareInfo, RemoteError> {
        let permissions = permissions.bits().to_string();
        let path = path_of(path);
        let form =
            [("path", path.as_str()), ("shareType", "0"), ("shareWith", recipient), ("permissions", &permissions)];
        let (data, _) = self.ocs_call(SHARES_API, Method::POST, "shares", &[], &form, &[]).await?;
        share_of(&data, "POST shares")
    }

    /// `GET /shares?path=...`: the shares of the folder at `path` made by this user.
    pub async fn shares_of(&self, path: &[String]) -> Result<Vec<ShareInfo>, RemoteError> {
        let path = path_of(path);
        let query = [("path", path.as_str()), ("reshares", "false")];
        let (data, _) = self.ocs_call(SHARES_API, Method::GET, "shares", &query, &[], &[]).await?;
        let list = data.as_array().ok_or_else(|| RemoteError::Protocol {
            request: "GET shares".into(),
            reason: "the share list is not an array".into(),
        })?;
        list.iter().map(|share| share_of(share, "GET shares")).collect()
    }

    /// `DELETE /shares/{id}`.
    pub async fn delete_share(&self, id: &str) -> Result<(), RemoteError> {
        self.ocs_call(SHARES_API, Method::DELETE, &format!("shares/{id}"), &[], &[], &[]).await.map(|_| ())
    }

    /// `PUT /meta-data/{id}/filedrop`: adds file-drop entries (a JSON object) to a top folder's metadata.
    pub async fn put_filedrop(&self, file_id: u64, entries_json: &str) -> Result<(), RemoteError> {
        self.ocs_call(
            super::ocs::E2EE_API,
            Method::PUT,
            &format!("meta-data/{file_id}/filedrop"),
            &[],
            &[("filedrop", entries_json)],
            &[],
        )
        .await
        .map(|_| ())
    }
}

impl super::Sharing for NextcloudClient {
    async fn certificates(
        &self,
        users: &[&str],
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, RemoteError> {
        self.public_keys(users).await
    }

    async fn share(
        &self,
        path: &[String],
        recipient: &str,
        permissions: SharePermissions,
    ) -> Result<ShareInfo, RemoteError> {
        self.create_user_share(path, recipient, permissions).await
    }

    async fn shares(&self, path: &[String]) -> Result<Vec<ShareInfo>, RemoteError> {
        self.shares_of(path).await
    }

    async fn unshare(&self, id: &str) -> Result<(), RemoteError> {
        self.delete_share(id).await
    }

    async fn add_filedrop(&self, file_id: u64, entries_json: &str) -> Result<(), RemoteError> {
        self.put_filedrop(file_id, entries_json).await
    }
}
