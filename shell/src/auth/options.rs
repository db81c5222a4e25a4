//! `--auth-token`: etcd's token kinds and their options
//! (`simple`, or `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m`).

use std::collections::BTreeMap;
use std::time::Duration;

/// etcd's default lifetime of a JWT token.
const JWT_TTL_DEFAULT: Duration = Duration::from_secs(300);

/// How this member authenticates clients and issues their tokens.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    pub token: TokenKind,
    /// How long a simple token lives past its last use.
    pub token_ttl_seconds: u64,
    /// The bcrypt cost of new password hashes.
    pub bcrypt_cost: u32,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            token: TokenKind::Simple,
            token_ttl_seconds: 300,
            bcrypt_cost: bcrypt::DEFAULT_COST,
        }
    }
}

#[derive(Clone)]
pub enum TokenKind {
    /// Random strings every member learns through raft.
    Simple,
    /// Signed tokens that carry the user and the auth revision.
    Jwt(std::sync::Arc<super::jwt::JwtKeys>),
}

impl std::fmt::Debug for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenKind::Simple => f.write_str("simple"),
            TokenKind::Jwt(_) => f.write_str("jwt"),
        }
    }
}

/// Parses an `--auth-token` value, reading the JWT key files it names.
pub fn parse_auth_token(value: &str) -> Result<TokenKind, String> {
    let mut parts = value.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut options = BTreeMap::new();
    for part in parts {
        let Some((name, option)) = part.split_once('=') else {
            return Err(format!("--auth-token: {part:?} is not name=value"));
        };
        if options.insert(name, option).is_some() {
            return Err(format!("--auth-token: {name} given twice"));
        }
    }
    match kind {
        "simple" if options.is_empty() => Ok(TokenKind::Simple),
        "simple" => Err("--auth-token: simple takes no options".into()),
        "jwt" => {
            let ttl = match options.remove("ttl") {
                None => JWT_TTL_DEFAULT,
                Some(ttl) => parse_duration(ttl)
                    .ok_or_else(|| format!("--auth-token: bad ttl {ttl:?} (e.g. 10m, 30s)"))?,
            };
            let keys = super::jwt::JwtKeys::load(
                options.remove("sign-method"),
                options.remove("pub-key"),
                options.remove("priv-key"),
                ttl,
            )
            .map_err(|e| format!("--auth-token: {e}"))?;
            if let Some(unknown) = options.keys().next() {
                return Err(format!("--auth-token: unknown option {unknown}"));
            }
            Ok(TokenKind::Jwt(std::sync::Arc::new(keys)))
        }
        other => Err(format!(
            "--auth-token: unknown token type {other:?} (simple or jwt)"
        )),
    }
}

/// A Go-style duration of one unit: `300ms`, `30s`, `10m`, `1h`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        "h" => Duration::from_secs(number.checked_mul(3600)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_options_parse_as_etcds() {
        assert!(matches!(parse_auth_token("simple"), Ok(TokenKind::Simple)));
        assert!(parse_auth_token("simple,ttl=1m").is_err());
        assert!(parse_auth_token("opaque").is_err());
        assert!(parse_auth_token("jwt,sign-method=RS256,sign-method=RS256").is_err());
        assert!(parse_auth_token("jwt,pub-key").is_err());
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
