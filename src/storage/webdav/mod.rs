//! WebDAV: the one client every WebDAV server is reached with ([`client::DavClient`], also under
//! Nextcloud's end-to-end encryption API), its PROPFIND parser ([`propfind`]), and any WebDAV server as a
//! [`Store`](super::Store) ([`store::DavStore`]).

pub mod client;
pub mod propfind;
pub mod store;

pub use client::DavClient;
pub use store::{DavConfig, DavStore};
