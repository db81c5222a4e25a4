//! etcd's authentication on the client port: who a request comes from
//! (a token, or the client certificate's common name), the token kinds of
//! `--auth-token`, and password hashing. What an identity may do is
//! decided in core ([`e2d_core::auth`]).

mod identity;
mod jwt;
mod options;
mod password;

pub use identity::{identify, identify_now, requester, unix_seconds, ClientCommonName};
pub use options::{parse_auth_token, AuthOptions, TokenKind};
pub use password::{hash_password, password_matches};
