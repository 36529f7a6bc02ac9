//! The signature step: the cosign signatures of a candidate's digest (the index's, for a
//! multi-platform image) against its environment's `signatures:` policy.
//!
//! The registry's listing already names the signature manifest (the `sha256-<hex>.sig`
//! tag's digest), so an unsigned digest costs no call, and a signature is fetched and
//! verified once per (signature manifest, digest, keys): all three are content, so the
//! answer never changes, and an idle cycle costs no registry call. A new signature (cosign
//! appends a layer) is a new manifest digest, read at once.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::{Engine, EnvCtx};
use crate::config::ServiceConfig;
use crate::domain::gate::GateDecision;
use crate::domain::image::Digest;
use crate::domain::select::ImageRecord;
use crate::domain::signature::{self, KeySource, SignatureCheck, SignaturePolicy};
use crate::signature::keyless::TrustRoot;
use crate::signature::{Trust, TrustedKey, verify_with};

/// The cache key of a verification: signature manifest, signed digest, and the keys (each
/// where the policy keeps it and its fingerprint, since the evidence names both).
pub(super) type SignatureKey = (Digest, Digest, String);

impl Engine {
    /// The gate's decision with the signature check of `digest`, and the check for the
    /// evidence (`None` when the policy verifies nothing, or the check could not be made).
    /// A check that cannot be made now (the registry or a key unreadable) makes a required
    /// signature wait, never block: a blocked candidate's PR is closed.
    pub(super) async fn signature_gate(
        &self,
        cx: &EnvCtx<'_>,
        digest: &Digest,
        gate: GateDecision,
    ) -> (GateDecision, Option<SignatureCheck>) {
        let policy = &cx.env_policy.signatures;
        if !policy.active() {
            return (gate, None);
        }
        match self
            .signature_check(cx.svc, cx.images, digest, policy)
            .await
        {
            Ok(check) => (signature::gate(gate, &check, policy), Some(check)),
            Err(why) if policy.required && matches!(gate, GateDecision::Pass { .. }) => {
                let reason = format!("signatures cannot be verified now: {why}");
                (GateDecision::Wait { reason }, None)
            }
            Err(why) => {
                tracing::warn!(service = %cx.svc.name, environment = %cx.env.name, %digest, error = %why, "cannot verify the candidate's signatures");
                (gate, None)
            }
        }
    }

    /// The signature check of `digest` of `svc`, whose registry listing is `images`; an
    /// error when it cannot be made now (what could not be read).
    pub(super) async fn signature_check(
        &self,
        svc: &ServiceConfig,
        images: &[ImageRecord],
        digest: &Digest,
        policy: &SignaturePolicy,
    ) -> Result<SignatureCheck, String> {
        let tag = signature::signature_tag(digest);
        let Some((manifest, pushed_at)) = images
            .iter()
            .find(|i| i.tags.iter().any(|t| t.as_str() == tag))
            .map(|i| (i.digest.clone(), i.pushed_at))
        else {
            return Ok(signature::judge(digest, Vec::new()));
        };
        let (trust, unusable) = self.trust(policy).await?;
        let key = (manifest.clone(), digest.clone(), trust.identity());
        let check = match self.signatures.get(&key) {
            Some(c) => c,
            None => {
                let stored = self
                    .ports
                    .signatures
                    .cosign_signatures(svc.registry_id.as_deref(), &svc.repository, &manifest)
                    .await
                    .map_err(|e| e.to_string())?;
                let outcomes = stored
                    .iter()
                    .map(|s| verify_with(s, digest, &manifest, &trust, pushed_at))
                    .collect();
                let check = signature::judge(digest, outcomes);
                self.signatures.insert(key, check.clone());
                check
            }
        };
        Ok(match check {
            SignatureCheck::Unverified { reason } if !unusable.is_empty() => {
                SignatureCheck::Unverified {
                    reason: format!("{reason}; {}", unusable.join("; ")),
                }
            }
            c => c,
        })
    }

    /// What the policy trusts, parsed, and what is wrong with what is not a key or a
    /// trusted root; an error when something cannot be read now.
    async fn trust(&self, policy: &SignaturePolicy) -> Result<(Trust, Vec<String>), String> {
        let mut trust = Trust::default();
        let mut unusable = Vec::new();
        for source in &policy.keys {
            match TrustedKey::parse(source, &self.read_trust(source).await?) {
                Ok(k) => trust.keys.push(k),
                Err(why) => unusable.push(why),
            }
        }
        if let (Some(source), false) = (&policy.trusted_root, policy.keyless.is_empty()) {
            let text = self.read_trust(source).await?;
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            let parsed = match self.trust_roots.get(&hash) {
                Some(root) => Ok(root),
                None => TrustRoot::parse(source, &text)
                    .map(Arc::new)
                    .inspect(|root| {
                        self.trust_roots.insert(hash, Arc::clone(root));
                    }),
            };
            match parsed {
                Ok(root) => trust.keyless = Some((root, policy.keyless.clone())),
                Err(why) => unusable.push(why),
            }
        }
        Ok((trust, unusable))
    }

    /// The text of a key or trusted root the policy names.
    async fn read_trust(&self, source: &KeySource) -> Result<String, String> {
        self.ports
            .public_keys
            .public_key(source)
            .await
            .map_err(|e| format!("{source} cannot be read: {e}"))
    }
}
