//! The GitHub stand-in's App: one GitHub App, installed on the repository, with its own RSA
//! key. It checks App JWTs as GitHub does (RS256 signature by the App's key, `iss` the App's
//! id, `iat` not in the future, `exp` after now and at most 10 minutes away, a minute
//! of clock skew allowed) and issues installation tokens that expire after a lifetime a test
//! or `tugboat sandbox --token-ttl` can shorten. Times are the wall clock's, like the JWTs
//! tugboat signs.

use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The App's id, as tugboat's config names it.
pub const APP_ID: u64 = 424242;
/// The App's slug: its actions show as `tugboat[bot]`, the stand-in's bot.
pub const APP_SLUG: &str = "tugboat";
/// The installation on the sandbox repository.
pub const INSTALLATION_ID: u64 = 7_000_001;
/// How long an installation token lives unless shortened (GitHub: one hour).
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The App and the installation tokens it issued.
pub struct App {
    key: KeyPair,
    pem: String,
    state: Mutex<State>,
}

struct State {
    ttl: Duration,
    /// Every token issued, with when it expires.
    tokens: Vec<(String, DateTime<Utc>)>,
    /// JWTs refused, by reason.
    refused: Vec<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &APP_ID)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl App {
    /// A new App with a fresh 2048-bit RSA key.
    pub fn generate() -> Result<Self, String> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&key)
            .map_err(|e| e.to_string())?;
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(Self {
            key,
            pem,
            state: Mutex::new(State {
                ttl: TOKEN_TTL,
                tokens: Vec::new(),
                refused: Vec::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The App's private key in PEM (PKCS#8), as GitHub lets its owner download it.
    pub fn private_key_pem(&self) -> &str {
        &self.pem
    }

    /// Installation tokens live this long from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.state().ttl = ttl;
    }

    /// Every installation token issued so far has expired (as if its hour had passed).
    pub fn expire_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        for t in &mut self.state().tokens {
            t.1 = t.1.min(past);
        }
    }

    /// How many installation tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens.len()
    }

    /// Why JWTs were refused, in order.
    pub fn refused_jwts(&self) -> Vec<String> {
        self.state().refused.clone()
    }

    /// Whether `token` is an installation token that has not expired.
    pub fn token_valid(&self, token: &str) -> bool {
        let now = Utc::now();
        self.state()
            .tokens
            .iter()
            .any(|(t, until)| t == token && *until > now)
    }

    /// Issue an installation token; its value and expiry.
    pub fn issue(&self) -> (String, DateTime<Utc>) {
        let mut random = [0u8; 20];
        let _ = aws_lc_rs::rand::fill(&mut random);
        // Opaque, as GitHub's new format is: no fixed prefix or length to rely on.
        let token = format!("sbx_{}", b64url(&random));
        let mut state = self.state();
        let ttl = chrono::Duration::from_std(state.ttl).unwrap_or(chrono::Duration::hours(1));
        let until = Utc::now() + ttl;
        state.tokens.push((token.clone(), until));
        (token, until)
    }

    /// Check an App JWT as GitHub does; the reason when it is refused.
    pub fn verify_jwt(&self, jwt: &str) -> Result<(), String> {
        let r = self.check(jwt);
        if let Err(why) = &r {
            self.state().refused.push(why.clone());
        }
        r
    }

    fn check(&self, jwt: &str) -> Result<(), String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, payload, sig] = parts.as_slice() else {
            return Err("not a JWT".into());
        };
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| "not base64url".to_owned())
        };
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| "a header that is not JSON")?;
        if header["alg"] != "RS256" {
            return Err(format!("alg {} is not RS256", header["alg"]));
        }
        let signed = format!("{}.{}", parts[0], parts[1]);
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public_key().as_ref(),
        )
        .verify(signed.as_bytes(), &decode(sig)?)
        .map_err(|_| "the signature does not verify with the App's key".to_owned())?;
        let claims: Value =
            serde_json::from_slice(&decode(payload)?).map_err(|_| "claims that are not JSON")?;
        let iss_ok = claims["iss"].as_u64() == Some(APP_ID)
            || claims["iss"].as_str() == Some(APP_ID.to_string().as_str());
        if !iss_ok {
            return Err(format!("iss {} is not the App's id", claims["iss"]));
        }
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err("no iat or exp".into());
        };
        let now = Utc::now().timestamp();
        if iat > now + 60 {
            return Err("iat is in the future".into());
        }
        if exp <= now - 60 {
            return Err("the JWT expired".into());
        }
        if exp > now + 660 {
            return Err("exp is more than 10 minutes away".into());
        }
        Ok(())
    }
}
