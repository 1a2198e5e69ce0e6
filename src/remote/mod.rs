//! Talking to servers. So far: parsing what a Nextcloud WebDAV server answers to PROPFIND.

pub mod propfind;
