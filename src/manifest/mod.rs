//! Format-preserving manifest reading and editing: text in, text out, no I/O.
pub mod refs;
pub mod tree;

pub use refs::{Change, Edited, ManifestError, RefKind, Reference, locate, set_image};
