//! The ECR operations of the AWS stand-in: images listed, pushed, scanned and described as
//! ECR's API reference documents them.

use super::*;

/// `GetRegistryScanningConfiguration`: the registry's scanning configuration: basic scan on push, or enhanced continuous.
pub(super) fn get_registry_scanning_configuration(aws: &Aws) -> Response {
    let scan_type = if aws.lock().enhanced {
        "ENHANCED"
    } else {
        "BASIC"
    };
    let frequency = if scan_type == "ENHANCED" {
        "CONTINUOUS_SCAN"
    } else {
        "SCAN_ON_PUSH"
    };
    let filters: Vec<Value> = aws
        .lock()
        .scan_filters
        .clone()
        .unwrap_or_else(|| vec!["*".to_owned()])
        .into_iter()
        .map(|f| json!({"filter": f, "filterType": "WILDCARD"}))
        .collect();
    ok(
        json!({"registryId": REGISTRY_ID, "scanningConfiguration": {"scanType": scan_type,
        "rules": [{"scanFrequency": frequency, "repositoryFilters": filters}]}}),
    )
}

/// `PutImage`: store a manifest under a tag (an image, or an index, which ECR does not scan itself).
pub(super) fn put_image(aws: &Aws, req: &Value) -> Response {
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(repo), Some(manifest)) = (s("repositoryName"), s("imageManifest")) else {
        return aws_error(
            "InvalidParameterException",
            "repositoryName and imageManifest are required",
        );
    };
    let tag = s("imageTag").unwrap_or_default();
    let media_type = s("imageManifestMediaType")
        .or_else(|| {
            serde_json::from_str::<Value>(&manifest)
                .ok()?
                .get("mediaType")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    let digest = if media_type == OCI_INDEX || media_type.contains("manifest.list") {
        // An index has no scan of its own: ECR scans only its children.
        let digest = digest_of(&manifest);
        let stored = Stored {
            manifest: &manifest,
            media_type: &media_type,
            scan_status: "NONE",
            findings: vec![],
            pushed_at: aws.clock.now(),
        };
        aws.store_image(&repo, &tag, &digest, stored);
        aws.announce(&repo, &tag, &digest, None);
        digest
    } else {
        aws.put_image(&repo, &tag, &manifest, "COMPLETE", vec![], aws.clock.now())
    };
    ok(
        json!({"image": {"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": digest, "imageTag": tag}, "imageManifest": manifest}}),
    )
}

pub(super) fn describe_images(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let max = req
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let tagged_only = req.pointer("/filter/tagStatus").and_then(Value::as_str) == Some("TAGGED");
    let wanted: Vec<&str> = req
        .get("imageIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|id| id.get("imageDigest").and_then(Value::as_str))
        .collect();
    let g = aws.lock();
    let Some(images) = g.repos.get(repo) else {
        return aws_error(
            "RepositoryNotFoundException",
            &format!(
                "The repository with name '{repo}' does not exist in the registry with id '{REGISTRY_ID}'"
            ),
        );
    };
    // Asked by digest: every one must exist, or ECR answers ImageNotFoundException
    // (API_DescribeImages, Errors).
    if let Some(missing) = wanted
        .iter()
        .find(|d| !images.iter().any(|i| i.digest == **d))
    {
        return aws_error(
            "ImageNotFoundException",
            &format!(
                "The image with imageId {{imageDigest:'{missing}'}} does not exist within the repository with name '{repo}' in the registry with id '{REGISTRY_ID}'"
            ),
        );
    }
    let all: Vec<Value> = images
        .iter()
        .filter(|i| wanted.is_empty() || wanted.contains(&i.digest.as_str()))
        .filter(|i| !tagged_only || !i.tags.is_empty())
        .map(|i| {
            // An image's `artifactMediaType` is its config's media type; an index has none
            // (API_ImageDetail).
            let mut d = json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageDigest": i.digest,
                               "imageSizeInBytes": 52_428_800, "imagePushedAt": i.pushed_at,
                               "imageManifestMediaType": i.media_type, "imageStatus": i.status});
            if !i.tags.is_empty() {
                d["imageTags"] = json!(i.tags);
            }
            if i.media_type == OCI_MANIFEST {
                d["artifactMediaType"] = json!(OCI_CONFIG);
            }
            d
        })
        .collect();
    let token = req.get("nextToken").and_then(Value::as_str);
    let (items, next) = page(&all, token, max);
    ok(json!({"imageDetails": items, "nextToken": next}))
}

/// The image `digest` of `repo`, or ECR's error (code, message) for a missing repository or
/// image.
pub(super) fn image_mut<'a>(
    g: &'a mut Inner,
    repo: &str,
    digest: &str,
) -> Result<&'a mut Image, (&'static str, String)> {
    let Some(images) = g.repos.get_mut(repo) else {
        return Err((
            "RepositoryNotFoundException",
            format!("The repository with name '{repo}' does not exist"),
        ));
    };
    images
        .iter_mut()
        .find(|i| i.digest == digest)
        .ok_or_else(|| {
            (
                "ImageNotFoundException",
                format!("The image with imageId {{imageDigest:'{digest}'}} does not exist"),
            )
        })
}

pub(super) fn start_scan(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let digest = req
        .pointer("/imageId/imageDigest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let today = aws.clock.now().date_naive();
    let mut g = aws.lock();
    let img = match image_mut(&mut g, &repo, &digest) {
        Ok(i) => i,
        Err((code, message)) => return aws_error(code, &message),
    };
    if img.status != "ACTIVE" {
        // ImageArchivedException is one of StartImageScan's errors (aws-sdk-ecr's
        // StartImageScanError); the message's wording is ours.
        return aws_error(
            "ImageArchivedException",
            &format!(
                "The image with imageId {{imageDigest:'{digest}'}} is archived and cannot be scanned"
            ),
        );
    }
    if img.media_type != OCI_MANIFEST {
        // ECR's words for a StartImageScan of an index (docker/setup-buildx-action#186).
        return aws_error(
            "UnsupportedImageTypeException",
            &format!(
                "An artifact with media type '{}' cannot be scanned",
                img.media_type
            ),
        );
    }
    if img.scan_started == Some(today) {
        return aws_error(
            "LimitExceededException",
            "The scan quota per image has been exceeded. Wait and try again.",
        );
    }
    img.scan_started = Some(today);
    // The scan is in progress for one more look; then the stored findings are its result.
    img.scan_status = "IN_PROGRESS".into();
    img.polls_until_complete = Some(1);
    ok(
        json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": digest},
               "imageScanStatus": {"status": "IN_PROGRESS"}}),
    )
}

pub(super) fn describe_findings(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let digest = req
        .pointer("/imageId/imageDigest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let now = aws.clock.now().timestamp_micros() as f64 / 1e6;
    let mut g = aws.lock();
    let (enhanced, delay) = (g.enhanced, g.inspector_delay);
    let img = match image_mut(&mut g, repo, digest) {
        Ok(i) => i,
        Err((code, message)) => return aws_error(code, &message),
    };
    if img.scan_status == "NONE" {
        return aws_error(
            "ScanNotFoundException",
            &format!("Image scan does not exist for the image with '{{imageDigest:'{digest}'}}'"),
        );
    }
    match img.polls_until_complete {
        Some(0) => {
            img.scan_status = "COMPLETE".into();
            img.polls_until_complete = None;
        }
        Some(n) => img.polls_until_complete = Some(n - 1),
        None => {}
    }
    let max = req
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let token = req.get("nextToken").and_then(Value::as_str);
    let head = json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": digest}});
    let young = now - img.pushed_at < delay.as_seconds_f64();
    let out = if enhanced && img.scan_status == "COMPLETE" {
        inspector_answer(head, img, young, max, token)
    } else {
        basic_answer(head, img, max, token)
    };
    ok(out)
}

/// A basic scan's answer (API_DescribeImageScanFindings): `findings` with `attributes`, the
/// severity counts and the completion time once complete; a failure's description.
fn basic_answer(mut out: Value, img: &Image, max: usize, token: Option<&str>) -> Value {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for f in &img.findings {
        *counts.entry(f.severity.clone()).or_insert(0) += 1;
    }
    let findings: Vec<Value> = img
        .findings
        .iter()
        .map(|f| json!({"name": f.id, "severity": f.severity, "uri": format!("https://nvd.nist.gov/vuln/detail/{}", f.id),
                        "attributes": f.package.iter().map(|p| json!({"key": "package_name", "value": p})).collect::<Vec<_>>()}))
        .collect();
    let (items, next) = page(&findings, token, max);
    let complete = img.scan_status == "COMPLETE";
    let description = match (&img.scan_failure, complete) {
        (Some(f), _) if img.scan_status == "FAILED" => f.as_str(),
        (_, true) => "The scan was completed successfully.",
        _ => "",
    };
    out["imageScanStatus"] = json!({"status": img.scan_status, "description": description});
    if complete {
        out["imageScanFindings"] = json!({"imageScanCompletedAt": img.pushed_at, "vulnerabilitySourceUpdatedAt": img.pushed_at,
                                          "findingSeverityCounts": counts, "findings": items});
        out["nextToken"] = json!(next);
    }
    out
}

/// Inspector's answer under enhanced scanning: status `ACTIVE` ("Continuous scan is selected
/// for image."), `enhancedFindings` with their own status, and, while Inspector has not
/// reported yet, nothing but `findings: []` (aws/aws-cli#6759, aws/aws-sdk#289). Shape as in
/// API_DescribeImageScanFindings' enhanced example.
fn inspector_answer(
    mut out: Value,
    img: &Image,
    young: bool,
    max: usize,
    token: Option<&str>,
) -> Value {
    out["imageScanStatus"] =
        json!({"status": "ACTIVE", "description": "Continuous scan is selected for image."});
    if young {
        out["imageScanFindings"] = json!({"findings": []});
        return out;
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let findings: Vec<Value> = img
        .findings
        .iter()
        .map(|f| {
            let status = f.status.clone().unwrap_or_else(|| "ACTIVE".into());
            if status == "ACTIVE" {
                *counts.entry(f.severity.clone()).or_insert(0) += 1;
            }
            json!({"awsAccountId": REGISTRY_ID, "findingArn": format!("arn:aws:inspector2:eu-north-1:{REGISTRY_ID}:finding/{}", f.id),
                   "title": format!("{} - {}", f.id, f.package.as_deref().unwrap_or("package")),
                   "type": "PACKAGE_VULNERABILITY", "severity": f.severity, "status": status,
                   "firstObservedAt": img.pushed_at, "lastObservedAt": img.pushed_at, "updatedAt": img.pushed_at,
                   "fixAvailable": "YES", "exploitAvailable": "NO",
                   "packageVulnerabilityDetails": {"vulnerabilityId": f.id, "source": "NVD",
                       "sourceUrl": format!("https://nvd.nist.gov/vuln/detail/{}", f.id),
                       "vulnerablePackages": f.package.iter().map(|p| json!({"name": p, "version": "1.0.0", "fixedInVersion": "1.0.1"})).collect::<Vec<_>>()}})
        })
        .collect();
    let (items, next) = page(&findings, token, max);
    out["imageScanFindings"] = json!({"imageScanCompletedAt": img.pushed_at, "vulnerabilitySourceUpdatedAt": img.pushed_at,
                                      "findingSeverityCounts": counts, "enhancedFindings": items});
    out["nextToken"] = json!(next);
    out
}

/// BatchGetImage: each asked-for manifest as pushed, or a failure `ImageNotFound`
/// (API_BatchGetImage, API_ImageFailure).
pub(super) fn batch_get_image(aws: &Aws, req: &Value) -> Response {
    let repo = req
        .get("repositoryName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let g = aws.lock();
    let Some(images) = g.repos.get(repo) else {
        return aws_error(
            "RepositoryNotFoundException",
            &format!("The repository with name '{repo}' does not exist"),
        );
    };
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for id in req
        .get("imageIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let digest = id.get("imageDigest").and_then(Value::as_str);
        let tag = id.get("imageTag").and_then(Value::as_str);
        match images.iter().find(|i| {
            digest.is_some_and(|d| d == i.digest) || tag.is_some_and(|t| i.tags.iter().any(|x| x == t))
        }) {
            Some(i) => found.push(json!({"registryId": REGISTRY_ID, "repositoryName": repo, "imageId": {"imageDigest": i.digest},
                                         "imageManifest": i.manifest, "imageManifestMediaType": i.media_type})),
            None => failures.push(json!({"imageId": id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"})),
        }
    }
    ok(json!({"images": found, "failures": failures}))
}

/// DescribeRepositories of the named repositories (API_DescribeRepositories): each with its
/// tag mutability; a name the registry does not have is RepositoryNotFoundException.
pub(super) fn describe_repositories(aws: &Aws, req: &Value) -> Response {
    let g = aws.lock();
    let names: Vec<&str> = req
        .get("repositoryNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for name in names {
        if !g.repos.contains_key(name) {
            return aws_error(
                "RepositoryNotFoundException",
                &format!(
                    "The repository with name '{name}' does not exist in the registry with id '{REGISTRY_ID}'"
                ),
            );
        }
        let mutability = g.mutability.get(name).map_or("MUTABLE", String::as_str);
        out.push(json!({"repositoryArn": format!("arn:aws:ecr:{REGION}:{REGISTRY_ID}:repository/{name}"),
                        "registryId": REGISTRY_ID, "repositoryName": name,
                        "repositoryUri": format!("{REGISTRY_ID}.dkr.ecr.{REGION}.amazonaws.com/{name}"),
                        "imageTagMutability": mutability,
                        // The repository's own setting, which the registry's rules replace
                        // (PutImageScanningConfiguration "is being deprecated, in favor of
                        // specifying the image scanning configuration at the registry
                        // level"); ECR's default is false (API_ImageScanningConfiguration).
                        "imageScanningConfiguration": {"scanOnPush": false}}));
    }
    ok(json!({"repositories": out}))
}
