//! Test-only signing keys (`tests/fixtures/jwt/`) and what the app-JWT tests make from them:
//! tokens signed RS256 / ES256 / HS256 or not at all, and JWKS documents of the public halves.
//! Shared by chat-core's `tests/app_auth.rs` and chat-local's `tests/app_jwt.rs` (`#[path]`).
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The public half of `rsa-a.der` as PEM: what an attacker signs HS256 tokens with.
pub const RSA_A_PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/jwt/rsa-a.pub.pem");

/// A signing key with the `kid` it is published under.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
}

impl TestKey {
    /// RSA key A (2048 bits), RS256.
    pub fn rsa_a(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(include_bytes!("../fixtures/jwt/rsa-a.der")),
        )
    }

    /// RSA key B: another key, for tokens signed by the wrong key.
    pub fn rsa_b(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(include_bytes!("../fixtures/jwt/rsa-b.der")),
        )
    }

    /// A P-256 key, ES256.
    pub fn ec_p256(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(include_bytes!("../fixtures/jwt/ec-p256.der")),
        )
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey) -> Self {
        Self {
            kid: kid.into(),
            alg,
            key,
        }
    }

    /// The public JWK, as providers publish it (`kid`, `use: sig`, `alg`).
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).unwrap()
    }

    /// A token with this key's `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(Some(&self.kid), claims)
    }

    /// A token signed by this key that names `kid` (or none).
    pub fn sign_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(String::from);
        jsonwebtoken::encode(&header, claims, &self.key).expect("signs")
    }
}

/// A JWKS document of these keys' public halves.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// An HS256 token signed with `secret`, naming `kid` if given.
pub fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// An unsigned token: `{"alg":"none"}` and an empty signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        part(claims)
    )
}
