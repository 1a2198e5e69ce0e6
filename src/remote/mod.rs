//! Talking to servers: the HTTP client for Nextcloud's APIs, trust on first use, and PROPFIND parsing.

pub mod client;
pub mod propfind;
pub mod trust;

pub use client::{NextcloudClient, RemoteError, ServerConfig};
