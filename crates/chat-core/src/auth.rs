//! App JWTs: who the user behind a new session is.
//!
//! `POST /sessions` with `Authorization: Bearer <app JWT>` opens a user session for the
//! token's `sub`. The token is signed either by the app itself with HS256 and
//! `CHAT_AUTH_JWT_SECRET`, or by an identity provider (Cognito, Auth0, Supabase, Clerk, ...)
//! with RS256/ES256 and a key from its published JWKS at `CHAT_AUTH_JWKS_URL`; both may be
//! set at once. The rules:
//!
//! - The header's `alg` must fit the key: HS256 only with the secret; a JWKS key only with its
//!   own `alg` when it names one, else with its type's algorithms (RSA: RS*/PS*, P-256: ES256,
//!   P-384: ES384, Ed25519: EdDSA). A symmetric (`oct`) key in a JWKS is never used, so a
//!   token HMAC-signed with a public key cannot pass; `alg: none` does not even parse.
//! - `exp` is required and `nbf` checked when present, both against the service's
//!   [`Clock`](crate::ports::Clock) with [`LEEWAY_SECS`] of tolerance for clock skew.
//!   Arithmetic on them saturates, so a crafted date cannot overflow.
//! - `aud` (`CHAT_AUTH_JWT_AUDIENCE`) and `iss` (`CHAT_AUTH_JWT_ISSUER`) are checked when set,
//!   and then a token without the claim is refused; unset, they are not looked at.
//!
//! The JWKS is fetched lazily, by the first token that needs it (a Lambda cold start or a
//! guest session pays nothing), through the [`JwksSource`] port, then cached; keys older than
//! [`JWKS_MAX_AGE_MS`] are refetched on next use (and kept if that fails). A token naming an
//! unknown `kid` refreshes the set once (the provider may have rotated its keys), but such
//! refreshes happen at most once per [`JWKS_REFRESH_MS`], and no fetch at all follows a
//! failed one within [`JWKS_RETRY_MS`], so tokens with random `kid`s cannot make us fetch in
//! a loop. While no key set could be had, tokens that need one get 503 `unavailable`.

use crate::ChatError;
use crate::config::{Config, ConfigError};
use crate::error::ErrorCode;
use crate::model::{AgentRef, Millis};
use crate::ports::JwksSource;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Deserializer};
use std::str::FromStr;
use std::sync::Arc;

/// Tolerance for the clocks of the token's issuer and ours, on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
/// Least time between two refreshes of the JWKS for unknown `kid`s.
pub const JWKS_REFRESH_MS: Millis = 60_000;
/// Least time from a failed JWKS fetch to the next fetch.
pub const JWKS_RETRY_MS: Millis = 5_000;
/// Age after which the cached key set is refetched on next use (kept if that fetch fails).
pub const JWKS_MAX_AGE_MS: Millis = 3_600_000;
/// The longest `sub` taken as a user id.
const MAX_SUB_BYTES: usize = 256;
/// The longest agent `name`.
pub const MAX_AGENT_NAME_CHARS: usize = 80;

/// The app-JWT settings beside `CHAT_AUTH_JWT_SECRET` (which stays in [`Config`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppAuthConfig {
    /// `CHAT_AUTH_JWKS_URL`: the identity provider's JWKS.
    pub jwks_url: Option<String>,
    /// `CHAT_AUTH_JWT_AUDIENCE`: accepted `aud` values; empty: `aud` is not checked.
    pub audience: Vec<String>,
    /// `CHAT_AUTH_JWT_ISSUER`: accepted `iss` values; empty: `iss` is not checked.
    pub issuer: Vec<String>,
}

impl AppAuthConfig {
    /// Reads the variables; empty means unset. Audience and issuer take one value or several
    /// separated by commas. The JWKS URL must be https (http only on a loopback host).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let list = |name: &str| -> Vec<String> {
            env(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let jwks_url = env("CHAT_AUTH_JWKS_URL")
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        if let Some(u) = &jwks_url
            && !(u.starts_with("https://") || is_loopback_http(u))
        {
            return Err(ConfigError::Invalid {
                name: "CHAT_AUTH_JWKS_URL",
                expected: "an https:// URL (http:// only for 127.0.0.1 or localhost)",
            });
        }
        Ok(Self {
            jwks_url,
            audience: list("CHAT_AUTH_JWT_AUDIENCE"),
            issuer: list("CHAT_AUTH_JWT_ISSUER"),
        })
    }
}

fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Verifies app JWTs. Cheap to clone; the JWKS cache is shared by the clones.
#[derive(Clone)]
pub struct AppAuth {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Option<DecodingKey>,
    /// `Some` when `CHAT_AUTH_JWKS_URL` is set; `Some(None)` when no source was plugged in.
    jwks: Option<Option<Jwks>>,
    audience: Vec<String>,
    issuer: Vec<String>,
}

impl std::fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAuth")
            .field("hs256", &self.inner.secret.is_some())
            .field("jwks", &self.inner.jwks.is_some())
            .finish_non_exhaustive()
    }
}

impl AppAuth {
    /// The verifier of `config`; `jwks` fetches the key set when `CHAT_AUTH_JWKS_URL` is set.
    pub fn new(config: &Config, jwks: Option<Arc<dyn JwksSource>>) -> Self {
        let c = &config.app_auth;
        if jwks.is_some() && c.audience.is_empty() && c.issuer.is_empty() {
            tracing::warn!(
                "CHAT_AUTH_JWKS_URL is set without CHAT_AUTH_JWT_AUDIENCE or CHAT_AUTH_JWT_ISSUER: \
                 any unexpired token signed by those keys opens a user session"
            );
        }
        Self {
            inner: Arc::new(Inner {
                secret: config
                    .auth_jwt_secret
                    .as_ref()
                    .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
                jwks: c.jwks_url.as_ref().map(|_| jwks.map(Jwks::new)),
                audience: c.audience.clone(),
                issuer: c.issuer.clone(),
            }),
        }
    }

    /// Checks `token` at `now` (the service clock) and returns its `sub`, the user id.
    /// Every refusal is a 401 saying why; a key set that cannot be fetched is a 503.
    pub async fn verify(&self, token: &str, now: Millis) -> Result<String, ChatError> {
        Ok(self.verify_claims(token, now).await?.0)
    }

    /// Checks a signed-in user's token for the routes of their own conversations: a valid
    /// app JWT (as [`Self::verify`]) that is not an agent's (403 `forbidden`: agents have
    /// their own routes). Returns the user id.
    pub async fn verify_user(&self, token: &str, now: Millis) -> Result<String, ChatError> {
        let (id, claims) = self.verify_claims(token, now).await?;
        if claims.role.as_deref() == Some("agent") {
            return Err(ChatError::Forbidden(
                "this route is for signed-in users; agents use /agent/…".into(),
            ));
        }
        Ok(id)
    }

    /// Checks an agent's token: a valid app JWT (as [`Self::verify`]) whose `role` is
    /// `agent` and whose `name` has 1–80 characters. 401 for a bad token (a forged one
    /// claiming the role included), 403 `forbidden` for a valid one of another role.
    pub async fn verify_agent(&self, token: &str, now: Millis) -> Result<AgentRef, ChatError> {
        let (id, claims) = self.verify_claims(token, now).await.map_err(|e| match e {
            ChatError::Unauthorized {
                code: ErrorCode::AuthNotConfigured,
                ..
            } => ChatError::unauthorized(
                ErrorCode::AuthNotConfigured,
                "agents are not enabled on this server: set CHAT_AUTH_JWT_SECRET or CHAT_AUTH_JWKS_URL",
            ),
            e => e,
        })?;
        if claims.role.as_deref() != Some("agent") {
            return Err(ChatError::Forbidden(
                "this route is for agents: the app token's role is not agent".into(),
            ));
        }
        let name = claims.name.as_deref().unwrap_or("").trim();
        let chars = name.chars().count();
        if !(1..=MAX_AGENT_NAME_CHARS).contains(&chars) || name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "agent token has no usable name (1–{MAX_AGENT_NAME_CHARS} characters)"
            )));
        }
        Ok(AgentRef {
            id,
            name: name.to_string(),
        })
    }

    /// The verified `sub` and claims of `token`.
    async fn verify_claims(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<(String, AppClaims), ChatError> {
        let inner = &*self.inner;
        if inner.secret.is_none() && inner.jwks.is_none() {
            return Err(ChatError::unauthorized(
                ErrorCode::AuthNotConfigured,
                "user sessions are not enabled on this server; omit Authorization for a guest session",
            ));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("app token is not a valid JWT"))?;
        let key = match (header.alg, &inner.jwks) {
            (Algorithm::HS256, _) => inner
                .secret
                .clone()
                .ok_or_else(|| invalid("app tokens signed with HS256 are not accepted here"))?,
            (Algorithm::HS384 | Algorithm::HS512, _) | (_, None) => {
                return Err(invalid(format!(
                    "app tokens signed with {:?} are not accepted here",
                    header.alg
                )));
            }
            (alg, Some(Some(jwks))) => jwks.key(header.kid.as_deref(), alg, now).await?,
            (_, Some(None)) => {
                tracing::error!("CHAT_AUTH_JWKS_URL is set but no JWKS source was plugged in");
                return Err(keys_unavailable());
            }
        };
        let mut validation = Validation::new(header.alg);
        // Times are checked below against the service clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = !inner.audience.is_empty();
        if !inner.audience.is_empty() {
            validation.set_audience(&inner.audience);
            validation.required_spec_claims.insert("aud".into());
        }
        if !inner.issuer.is_empty() {
            validation.set_issuer(&inner.issuer);
            validation.required_spec_claims.insert("iss".into());
        }
        let claims = jsonwebtoken::decode::<AppClaims>(token, &key, &validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;

        let exp = claims
            .exp
            .ok_or_else(|| invalid("app token has no exp claim"))?;
        let leeway = LEEWAY_SECS * 1000;
        if exp.saturating_mul(1000).saturating_add(leeway) <= now {
            return Err(ChatError::unauthorized(
                ErrorCode::AuthExpired,
                "app token has expired",
            ));
        }
        if let Some(nbf) = claims.nbf
            && nbf.saturating_mul(1000).saturating_sub(leeway) > now
        {
            return Err(ChatError::unauthorized(
                ErrorCode::AuthNotYetValid,
                "app token is not valid yet (nbf)",
            ));
        }
        let sub = claims.sub.as_deref().unwrap_or("").trim();
        if sub.is_empty() || sub.len() > MAX_SUB_BYTES {
            return Err(invalid("app token has no usable sub"));
        }
        Ok((sub.to_string(), claims))
    }
}

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::unauthorized(ErrorCode::InvalidAuth, message)
}

fn keys_unavailable() -> ChatError {
    ChatError::Unavailable(
        "the identity provider's signing keys could not be fetched, please retry".into(),
    )
}

fn refusal(kind: &ErrorKind) -> ChatError {
    match kind {
        ErrorKind::InvalidAudience => invalid("app token is for another audience (aud)"),
        ErrorKind::InvalidIssuer => invalid("app token is from another issuer (iss)"),
        ErrorKind::MissingRequiredClaim(claim) => {
            invalid(format!("app token has no {claim} claim"))
        }
        ErrorKind::InvalidSignature => invalid("app token's signature does not verify"),
        ErrorKind::Json(_) => invalid("app token's claims are malformed"),
        _ => invalid("app token is invalid"),
    }
}

/// The claims we read; `aud` and `iss` are checked by jsonwebtoken.
#[derive(Deserialize)]
struct AppClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<i64>,
    /// `agent` for the agents of the console; anything else (or none) is a user.
    #[serde(default, deserialize_with = "lenient_string")]
    role: Option<String>,
    /// An agent's display name.
    #[serde(default, deserialize_with = "lenient_string")]
    name: Option<String>,
}

/// A string claim; any other JSON value reads as absent (a user token may carry `name` or
/// `role` of its own shape).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// A JWT NumericDate: seconds, integer or not; out-of-range values saturate.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<serde_json::Number>::deserialize(d)?.map(|n| {
        n.as_i64()
            .unwrap_or_else(|| n.as_f64().map_or(i64::MAX, |f| f as i64))
    }))
}

// ----- the JWKS cache ------------------------------------------------------------------------

/// The provider's keys, fetched on first use and refetched within limits.
struct Jwks {
    source: Arc<dyn JwksSource>,
    state: futures_util::lock::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    keys: Option<Arc<KeySet>>,
    fetched_at: Millis,
    /// No refresh for an unknown `kid` before this time.
    refresh_at: Millis,
    /// No fetch at all before this time (after a failure).
    retry_at: Millis,
}

enum Lookup {
    Key(DecodingKey),
    UnknownKid,
    NoFit,
}

impl Jwks {
    fn new(source: Arc<dyn JwksSource>) -> Self {
        Self {
            source,
            state: Default::default(),
        }
    }

    /// The key that verifies a token with this `kid` and `alg`. The lock is held across a
    /// fetch, so concurrent first uses wait for one fetch instead of each making their own.
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: Millis,
    ) -> Result<DecodingKey, ChatError> {
        let mut st = self.state.lock().await;
        let stale = st
            .keys
            .as_ref()
            .is_none_or(|_| now.saturating_sub(st.fetched_at) >= JWKS_MAX_AGE_MS);
        let mut fetched = false;
        if stale && now >= st.retry_at {
            fetched = true;
            // On failure an older set, if any, is still used.
            let _ = self.refetch(&mut st, now).await;
        }
        let Some(keys) = st.keys.clone() else {
            return Err(keys_unavailable());
        };
        match keys.find(kid, alg) {
            Lookup::Key(k) => return Ok(k),
            Lookup::NoFit => return Err(no_fit(alg)),
            Lookup::UnknownKid if fetched || now < st.refresh_at.max(st.retry_at) => {
                return Err(unknown_kid());
            }
            Lookup::UnknownKid => {}
        }
        // A kid we do not know: maybe the provider rotated its keys. Once, within the limit.
        tracing::info!("app token names an unknown key id; refetching the JWKS");
        st.refresh_at = now.saturating_add(JWKS_REFRESH_MS);
        let keys = self.refetch(&mut st, now).await?;
        match keys.find(kid, alg) {
            Lookup::Key(k) => Ok(k),
            Lookup::NoFit => Err(no_fit(alg)),
            Lookup::UnknownKid => Err(unknown_kid()),
        }
    }

    async fn refetch(&self, st: &mut CacheState, now: Millis) -> Result<Arc<KeySet>, ChatError> {
        let result = match self.source.fetch().await {
            Ok(doc) => KeySet::parse(&doc),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(keys) => {
                let keys = Arc::new(keys);
                tracing::info!(keys = keys.keys.len(), "JWKS fetched");
                st.keys = Some(keys.clone());
                st.fetched_at = now;
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed");
                st.retry_at = now.saturating_add(JWKS_RETRY_MS);
                Err(keys_unavailable())
            }
        }
    }
}

fn unknown_kid() -> ChatError {
    invalid("app token is signed by a key this server does not know (kid)")
}

fn no_fit(alg: Algorithm) -> ChatError {
    invalid(format!(
        "app token's algorithm {alg:?} does not fit its key"
    ))
}

/// The usable signing keys of a JWKS document.
struct KeySet {
    keys: Vec<UsableKey>,
}

struct UsableKey {
    kid: Option<String>,
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

impl KeySet {
    /// Keeps the verification keys we can use and skips the rest (encryption keys, symmetric
    /// keys, unknown types and curves). A document with none is an error.
    fn parse(doc: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(doc).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys: Vec<UsableKey> = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| usable(&jwk))
            .collect();
        if keys.is_empty() {
            return Err("the JWKS document has no usable signing key".into());
        }
        Ok(Self { keys })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let fit = |k: &&UsableKey| k.algs.contains(&alg);
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = named.next() else {
                    return Lookup::UnknownKid;
                };
                match std::iter::once(first).chain(named).find(fit) {
                    Some(k) => Lookup::Key(k.key.clone()),
                    None => Lookup::NoFit,
                }
            }
            // Without a kid only an unambiguous key will do.
            None => {
                let mut fitting = self.keys.iter().filter(fit);
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Key(k.key.clone()),
                    _ => Lookup::NoFit,
                }
            }
        }
    }
}

/// The key and the algorithms it may verify, or `None` for keys we never use.
fn usable(jwk: &Jwk) -> Option<UsableKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    use Algorithm::*;
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[ES256],
            EllipticCurve::P384 => &[ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => &[EdDSA],
        // Symmetric keys have no place in a public key set.
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
    };
    let algs = match jwk.common.key_algorithm {
        None => by_type.to_vec(),
        Some(named) => {
            let named = Algorithm::from_str(&named.to_string()).ok()?;
            if !by_type.contains(&named) {
                return None;
            }
            vec![named]
        }
    };
    Some(UsableKey {
        kid: jwk.common.key_id.clone(),
        algs,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(vars: &[(&str, &str)]) -> Result<AppAuthConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AppAuthConfig::from_env(&move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn config_reads_lists_treats_empty_as_unset_and_wants_https() {
        assert_eq!(cfg(&[]).unwrap(), AppAuthConfig::default());
        let c = cfg(&[
            (
                "CHAT_AUTH_JWKS_URL",
                " https://idp.example.com/.well-known/jwks.json ",
            ),
            ("CHAT_AUTH_JWT_AUDIENCE", "api://chat, other ,"),
            ("CHAT_AUTH_JWT_ISSUER", "https://idp.example.com/"),
        ])
        .unwrap();
        assert_eq!(
            c.jwks_url.as_deref(),
            Some("https://idp.example.com/.well-known/jwks.json")
        );
        assert_eq!(c.audience, ["api://chat", "other"]);
        assert_eq!(c.issuer, ["https://idp.example.com/"]);
        let empty = cfg(&[
            ("CHAT_AUTH_JWKS_URL", ""),
            ("CHAT_AUTH_JWT_AUDIENCE", " "),
            ("CHAT_AUTH_JWT_ISSUER", ""),
        ])
        .unwrap();
        assert_eq!(empty, AppAuthConfig::default());
        for ok in [
            "http://127.0.0.1:8080/jwks.json",
            "http://localhost/jwks",
            "http://[::1]:9/k",
        ] {
            assert!(cfg(&[("CHAT_AUTH_JWKS_URL", ok)]).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com/jwks.json",
            "http://127.0.0.1.evil.example/jwks",
            "ftp://127.0.0.1/jwks",
            "idp.example.com",
        ] {
            let e = cfg(&[("CHAT_AUTH_JWKS_URL", bad)]).unwrap_err();
            assert!(e.to_string().contains("CHAT_AUTH_JWKS_URL"), "{bad}");
            assert!(!e.to_string().contains(bad), "the value is not echoed");
        }
    }

    fn rsa_jwk(extra: serde_json::Value) -> Jwk {
        // Any well-formed modulus will do for parsing; nothing is verified with it here.
        let mut v = json!({"kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keys_verify_only_the_algorithms_that_fit_them() {
        let algs = |jwk: Jwk| usable(&jwk).map(|k| k.algs);
        assert_eq!(
            algs(rsa_jwk(json!({"alg": "RS256", "use": "sig"}))),
            Some(vec![Algorithm::RS256])
        );
        assert_eq!(
            algs(rsa_jwk(json!({}))),
            Some(vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512
            ])
        );
        // An RSA key that claims an HMAC or EC algorithm, or is for encryption: not used.
        assert_eq!(algs(rsa_jwk(json!({"alg": "HS256"}))), None);
        assert_eq!(algs(rsa_jwk(json!({"alg": "ES256"}))), None);
        assert_eq!(algs(rsa_jwk(json!({"use": "enc"}))), None);
        let oct: Jwk =
            serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})).unwrap();
        assert_eq!(
            algs(oct),
            None,
            "symmetric keys are never taken from a JWKS"
        );
        let ec: Jwk = serde_json::from_value(json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}))
        .unwrap();
        assert_eq!(algs(ec), Some(vec![Algorithm::ES256]));
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(br#"{"keys":[]}"#).is_err());
        assert!(
            KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"XYZ"}]}"#).is_err()
        );
        let one = json!({"keys": [{"kty": "XYZ"}, serde_json::to_value(rsa_jwk(json!({"kid": "a"}))).unwrap()]});
        let set = KeySet::parse(one.to_string().as_bytes()).unwrap();
        assert_eq!(
            set.keys.len(),
            1,
            "unknown key types are skipped, not fatal"
        );
        assert!(matches!(
            set.find(Some("a"), Algorithm::RS256),
            Lookup::Key(_)
        ));
        assert!(matches!(
            set.find(Some("a"), Algorithm::ES256),
            Lookup::NoFit
        ));
        assert!(matches!(
            set.find(Some("b"), Algorithm::RS256),
            Lookup::UnknownKid
        ));
        assert!(matches!(set.find(None, Algorithm::RS256), Lookup::Key(_)));
    }

    #[test]
    fn numeric_dates_saturate() {
        let c: AppClaims =
            serde_json::from_str(r#"{"exp": 18446744073709551615, "nbf": -1e300}"#).unwrap();
        assert_eq!((c.exp, c.nbf), (Some(i64::MAX), Some(i64::MIN)));
        let c: AppClaims = serde_json::from_str(r#"{"exp": 1700000000.5}"#).unwrap();
        assert_eq!(c.exp, Some(1_700_000_000));
        assert!(serde_json::from_str::<AppClaims>(r#"{"exp": "soon"}"#).is_err());
    }
}
