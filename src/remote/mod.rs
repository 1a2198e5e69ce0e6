//! Talking to servers: the HTTP client for Nextcloud's APIs (OCS and WebDAV), the [`Remote`] trait the
//! engine uses, trust on first use, and PROPFIND parsing.

pub mod backend;
pub mod client;
pub mod login;
pub mod propfind;
pub mod trust;
pub mod webdav;

pub use backend::{BodyStream, Remote};
pub use client::{LockToken, NextcloudClient, RemoteError, ServerConfig};
pub use webdav::{Progress, PutResult, RemoteEntry};
