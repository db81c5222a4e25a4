//! `--auth-token jwt`: signed tokens that carry the user and the auth
//! revision they were issued at, with etcd's claims (`username`,
//! `revision`, `exp`). A member with only the public key verifies tokens
//! but issues none, as etcd.

use std::time::Duration;

use jsonwebtoken::{
    Algorithm, AlgorithmFamily as Family, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

pub struct JwtKeys {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// An ECDSA private key from PEM, in SEC1 (`EC PRIVATE KEY`, what `openssl
/// ecparam -genkey` writes) or PKCS#8 (`PRIVATE KEY`), as etcd takes both.
fn ec_private_key(
    algorithm: Algorithm,
    pem: &[u8],
) -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    use rustls::pki_types::pem::PemObject;
    let invalid =
        || jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat);
    let curve = match algorithm {
        Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => &ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|_| invalid())?;
    let pair =
        EcdsaKeyPair::from_private_key_der(curve, der.secret_der()).map_err(|_| invalid())?;
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| invalid())?;
    Ok(EncodingKey::from_ec_der(pkcs8.as_ref()))
}

impl JwtKeys {
    /// Reads the keys `pub-key` and `priv-key` name, for `sign-method`.
    pub fn load(
        sign_method: Option<&str>,
        public_key: Option<&str>,
        private_key: Option<&str>,
        ttl: Duration,
    ) -> Result<Self, String> {
        let sign_method = sign_method.ok_or("jwt needs sign-method")?;
        let algorithm: Algorithm = sign_method
            .parse()
            .map_err(|_| format!("unknown sign-method {sign_method:?}"))?;
        let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
        let public_key = public_key.ok_or("jwt needs pub-key")?;
        let public_pem = read(public_key)?;
        let bad = |path: &str, e: jsonwebtoken::errors::Error| {
            format!("{path} is not a {sign_method} key: {e}")
        };
        let decoding = match algorithm.family() {
            Family::Rsa => DecodingKey::from_rsa_pem(&public_pem),
            Family::Ec => DecodingKey::from_ec_pem(&public_pem),
            Family::Ed => DecodingKey::from_ed_pem(&public_pem),
            Family::Hmac => return Err("HMAC sign-methods take no key pair".into()),
        }
        .map_err(|e| bad(public_key, e))?;
        let encoding = match private_key {
            None => None,
            Some(path) => {
                let private_pem = read(path)?;
                Some(
                    match algorithm.family() {
                        Family::Rsa => EncodingKey::from_rsa_pem(&private_pem),
                        Family::Ec => ec_private_key(algorithm, &private_pem),
                        Family::Ed => EncodingKey::from_ed_pem(&private_pem),
                        Family::Hmac => unreachable!("refused above"),
                    }
                    .map_err(|e| bad(path, e))?,
                )
            }
        };
        let keys = JwtKeys {
            algorithm,
            decoding,
            encoding,
            ttl,
        };
        if keys.encoding.is_some() {
            let probe = keys.sign("probe", 1, 0)?;
            if keys.verify(&probe, 0).is_none() {
                return Err("the public and private keys do not match".into());
            }
        }
        Ok(keys)
    }

    /// A token for `user` at auth `revision`, valid for the TTL from
    /// `now_seconds` (Unix time).
    pub fn sign(&self, user: &str, revision: u64, now_seconds: u64) -> Result<String, String> {
        let key = self
            .encoding
            .as_ref()
            .ok_or("this member has no private key to sign tokens with")?;
        let claims = Claims {
            username: user.to_owned(),
            revision,
            exp: now_seconds.saturating_add(self.ttl.as_secs().max(1)),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    /// The user and auth revision of a valid, unexpired token.
    pub fn verify(&self, token: &str, now_seconds: u64) -> Option<(String, u64)> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        (data.claims.exp > now_seconds).then_some((data.claims.username, data.claims.revision))
    }
}
