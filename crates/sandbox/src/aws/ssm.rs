//! The SSM Parameter Store operations of the AWS stand-in.

use super::*;

/// `GetParametersByPath`: the parameters below a path, ten a page.
pub(super) fn get_parameters_by_path(aws: &Aws, req: &Value) -> Response {
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
    let path = s("Path").unwrap_or_default();
    let recursive = req
        .get("Recursive")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max = req
        .get("MaxResults")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .min(10) as usize;
    let prefix = if path.ends_with('/') {
        path.clone()
    } else {
        format!("{path}/")
    };
    let g = aws.lock();
    let names: Vec<&String> = g
        .params
        .keys()
        .filter(|n| n.starts_with(&prefix) && (recursive || !n[prefix.len()..].contains('/')))
        .collect();
    if decrypting(req)
        && let Some(n) = names.iter().find(|n| g.undecryptable.contains(n.as_str()))
    {
        return kms_denied(n);
    }
    let all: Vec<Value> = names.iter().map(|n| param_json(n, &g.params[*n])).collect();
    drop(g);
    let (items, next) = page(&all, s("NextToken").as_deref(), max);
    ok(json!({"Parameters": items, "NextToken": next}))
}

/// `GetParameter`: one parameter, or ParameterNotFound.
pub(super) fn get_parameter(aws: &Aws, req: &Value) -> Response {
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = s("Name").unwrap_or_default();
    if decrypting(req) && aws.lock().undecryptable.contains(&name) {
        return kms_denied(&name);
    }
    match aws.lock().params.get(&name) {
        Some(p) => ok(json!({"Parameter": param_json(&name, p)})),
        None => aws_error("ParameterNotFound", &format!("parameter {name} not found")),
    }
}

/// `PutParameter`: create a parameter, or replace one when asked to.
pub(super) fn put_parameter(aws: &Aws, req: &Value) -> Response {
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(name), Some(value)) = (s("Name"), s("Value")) else {
        return aws_error("ValidationException", "Name and Value are required");
    };
    if value.len() > 4096 {
        return aws_error(
            "ValidationException",
            "Standard parameters are limited to 4096 characters",
        );
    }
    // SSM refuses to replace a parameter unless asked to (AWS SSM API reference,
    // PutParameter: "Overwrite: Overwrite an existing parameter. The default value is
    // false", and the error ParameterAlreadyExists).
    let overwrite = req
        .get("Overwrite")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !overwrite && aws.lock().params.contains_key(&name) {
        return aws_error(
            "ParameterAlreadyExists",
            "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
        );
    }
    let version = aws.put_parameter(&name, &value, &s("Type").unwrap_or_else(|| "String".into()));
    ok(json!({"Version": version, "Tier": "Standard"}))
}

fn decrypting(req: &Value) -> bool {
    req.get("WithDecryption")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A SecureString whose KMS key the caller may not use: KMS's AccessDeniedException, as
/// `GetParameter` passes it on ("… is not authorized to perform: kms:Decrypt on resource …
/// (Service: AWSKMS; …)", hashicorp/terraform-provider-aws#42849). That `GetParametersByPath`
/// fails the same way for a page holding one is inferred, not documented.
fn kms_denied(name: &str) -> Response {
    aws_error(
        "AccessDeniedException",
        &format!(
            "User: arn:aws:sts::{REGISTRY_ID}:assumed-role/tugboat/sandbox is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:eu-north-1:{REGISTRY_ID}:key/00000000-sandbox because no resource-based policy allows the kms:Decrypt action (parameter {name})"
        ),
    )
}

fn param_json(name: &str, p: &Parameter) -> Value {
    json!({"Name": name, "Type": p.kind, "Value": p.value, "Version": p.version, "DataType": "text",
           "ARN": format!("arn:aws:ssm:eu-north-1:{REGISTRY_ID}:parameter{name}"),
           "LastModifiedDate": Utc::now().timestamp()})
}
