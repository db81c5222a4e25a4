//! Password hashes: bcrypt, as etcd, hashed and checked off the runtime
//! (a hash at the default cost takes tens of milliseconds).

use e2d_core::Error;

/// The bcrypt hash of `password` at `cost`, in etcd's `$2a$` form.
pub async fn hash_password(password: String, cost: u32) -> Result<Vec<u8>, Error> {
    let hashed = crate::blocking::spawn(move || {
        bcrypt::hash_with_result(password, cost)
            .map(|parts| parts.format_for_version(bcrypt::Version::TwoA).into_bytes())
    })
    .await;
    match hashed {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(e)) => Err(Error::Internal(format!("hashing a password: {e}"))),
        Err(e) => Err(Error::Internal(format!("hashing a password: {e}"))),
    }
}

/// Whether `password` matches the stored `hash` (a damaged hash matches
/// nothing).
pub async fn password_matches(password: String, hash: Vec<u8>) -> bool {
    crate::blocking::spawn(move || {
        std::str::from_utf8(&hash)
            .ok()
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    })
    .await
    .unwrap_or(false)
}
