//! Folder metadata: the model, canonical JSON for signing, and the verifying codec.

pub mod audit;
pub mod canonical_json;
pub mod codec;
pub mod error;
pub mod filedrop;
pub mod model;
pub mod recovery;

pub use codec::{
    decode_sub_folder, decode_top_folder, encode_sub_folder, encode_top_folder, CertificateTrust, DecodedFolder,
    DecodedTopFolder, EncodedMetadata, Reader, ServerKeyTrust, Signer, TreeKeys, TrustedUser,
};
pub use error::MetadataError;
pub use model::{EncryptedBlock, FileEntry, FolderMetadata, MetadataDocument, MetadataUser};
