//! Format-preserving manifest reading and editing: text in, text out, no I/O.
mod edit;
pub mod refs;
pub mod tree;

pub use edit::{Change, Edited, plain_is_string, set_image, set_reference};
pub use refs::{ManifestError, RefKind, Reference, locate};
