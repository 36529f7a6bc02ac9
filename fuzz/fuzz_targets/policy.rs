//! A policy document from SSM, YAML or JSON, as anyone with `ssm:PutParameter` may write it:
//! resolving never panics, and an error always names the parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat_core::domain::policy::{PolicyDocument, resolve};

const PREFIX: &str = "/salon/promotion/";

fuzz_target!(|input: (bool, &str)| {
    let (service_doc, body) = input;
    let name = if service_doc {
        format!("{PREFIX}services/api")
    } else {
        format!("{PREFIX}defaults")
    };
    let docs = vec![PolicyDocument {
        name: name.clone(),
        version: 1,
        body: body.to_owned(),
    }];
    let envs = vec!["dev".to_owned(), "prod".to_owned()];
    if let Err(e) = resolve(&docs, PREFIX, "api", &envs) {
        assert!(
            e.parameter == name || e.parameter.starts_with(PREFIX),
            "error names {:?}, not {name:?}",
            e.parameter
        );
    }
});
