pub mod domain;
pub mod manifest;
pub mod config;
pub mod secret;
pub mod ports;
pub mod adapters;
pub mod engine;
