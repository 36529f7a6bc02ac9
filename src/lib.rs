pub mod domain;
pub mod manifest;
