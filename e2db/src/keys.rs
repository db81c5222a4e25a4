//! The key layout. Everything of one table lives under one prefix, so
//! dropping a table is one range delete:
//!
//! ```text
//! <ns>/<table>/schema                          the stored schema (JSON)
//! <ns>/<table>/seq                             last auto-increment key (decimal)
//! <ns>/<table>/rows/<pk>                       a row (JSON)
//! <ns>/<table>/unique/<field>/<h>              a unique value; holds <pk>
//! <ns>/<table>/index/<field>/<h>/<pk>          an indexed value (empty)
//! ```
//!
//! `<h>` is the lowercase hex SHA-256 of the value's encoding
//! ([`Value::encode`]), so any value (with `/`, `..`, binary) makes a
//! fixed-size, safe key segment. `<pk>` encodes the primary key so that
//! keys sort as the keys do: a non-negative integer as 20 decimal digits,
//! a negative one as `-` and 20 digits of its distance from `i64::MIN`, a
//! string as `s` and the hex of its UTF-8, bytes as `x` and their hex.

use sha2::{Digest, Sha256};

use crate::value::Value;

/// The longest namespace accepted, in bytes.
pub const NAMESPACE_MAX_BYTES: usize = 128;

/// The keys of one table.
#[derive(Debug, Clone)]
pub struct TableKeys {
    /// `<ns>/<table>/`
    prefix: String,
}

impl TableKeys {
    pub fn new(namespace: &str, table: &str) -> TableKeys {
        TableKeys {
            prefix: format!("{namespace}/{table}/"),
        }
    }

    /// Every key of the table.
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }

    pub fn schema(&self) -> String {
        format!("{}schema", self.prefix)
    }

    pub fn sequence(&self) -> String {
        format!("{}seq", self.prefix)
    }

    pub fn rows_prefix(&self) -> String {
        format!("{}rows/", self.prefix)
    }

    pub fn row(&self, pk: &str) -> String {
        format!("{}rows/{pk}", self.prefix)
    }

    pub fn unique(&self, field: &str, value: &Value) -> String {
        format!("{}unique/{field}/{}", self.prefix, value_hash(value))
    }

    /// The keys of every row whose `field` holds `value`.
    pub fn index_prefix(&self, field: &str, value: &Value) -> String {
        format!("{}index/{field}/{}/", self.prefix, value_hash(value))
    }

    pub fn index(&self, field: &str, value: &Value, pk: &str) -> String {
        format!("{}{pk}", self.index_prefix(field, value))
    }

    /// The encoded primary key of a row key, if it is one of this table's.
    pub fn pk_of_row<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("rows/")
    }
}

/// The end of the range of keys starting with `prefix` (etcd's prefix
/// range end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key segment of a primary key, or why the value cannot be one.
pub fn encode_pk(pk: &Value) -> Result<String, String> {
    match pk {
        Value::U64(u) => Ok(format!("{u:020}")),
        Value::I64(i) if *i < 0 => Ok(format!("-{:020}", i.abs_diff(i64::MIN))),
        Value::String(s) if !s.is_empty() => Ok(format!("s{}", hex(s.as_bytes()))),
        Value::Bytes(b) if !b.is_empty() => Ok(format!("x{}", hex(b))),
        other => Err(format!(
            "a primary key is an integer, a non-empty string or non-empty bytes, not {other}"
        )),
    }
}

/// The primary key a key segment encodes.
pub fn decode_pk(segment: &str) -> Option<Value> {
    let digits = |s: &str| (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then_some(());
    if let Some(rest) = segment.strip_prefix('-') {
        digits(rest)?;
        let distance: u64 = rest.parse().ok()?;
        return Some(Value::I64(i64::MIN.checked_add_unsigned(distance)?));
    }
    if let Some(rest) = segment.strip_prefix('s') {
        return String::from_utf8(unhex(rest)?).ok().map(Value::String);
    }
    if let Some(rest) = segment.strip_prefix('x') {
        return unhex(rest).map(Value::Bytes);
    }
    digits(segment)?;
    segment.parse().ok().map(Value::U64)
}

fn value_hash(value: &Value) -> String {
    hex(&Sha256::digest(value.encode()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The longest table name accepted, in bytes.
pub const TABLE_NAME_MAX_BYTES: usize = 64;

/// Checks a table name: 1 to 64 lowercase letters, digits, `_`, `-`.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > TABLE_NAME_MAX_BYTES || !valid_chars {
        return Err(format!(
            "table name {name:?} is not allowed: use 1 to {TABLE_NAME_MAX_BYTES} lowercase letters, digits, `_` or `-`"
        ));
    }
    Ok(())
}

/// Checks a namespace: 1 to 128 bytes of segments of letters, digits, `_`,
/// `-` and `.` separated by single `/`, no segment `.` or `..`.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    if namespace.is_empty()
        || namespace.len() > NAMESPACE_MAX_BYTES
        || !namespace.split('/').all(segment_ok)
    {
        return Err(format!(
            "namespace {namespace:?} is not allowed: use 1 to {NAMESPACE_MAX_BYTES} bytes of letters, digits, `_`, `-`, `.`, in segments separated by single `/` (such as \"myapp\" or \"prod/myapp\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_keys_round_trip_and_sort_like_their_values() {
        let keys = [
            Value::I64(i64::MIN),
            Value::I64(-2),
            Value::I64(-1),
            Value::U64(0),
            Value::U64(9),
            Value::U64(10),
            Value::U64(u64::MAX),
        ];
        let encoded: Vec<String> = keys.iter().map(|k| encode_pk(k).unwrap()).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        for (key, text) in keys.iter().zip(&encoded) {
            assert_eq!(decode_pk(text).as_ref(), Some(key));
        }
        for key in [Value::from("a/../b"), Value::from(vec![0u8, 255])] {
            let text = encode_pk(&key).unwrap();
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()), "{text}");
            assert_eq!(decode_pk(&text), Some(key));
        }
        assert!(encode_pk(&Value::Null).is_err());
        assert!(encode_pk(&Value::from("")).is_err());
        assert!(encode_pk(&Value::from(1.5)).is_err());
        assert_eq!(decode_pk("12"), None);
        assert_eq!(decode_pk("s4"), None);
    }

    #[test]
    fn index_keys_hide_the_value() {
        let keys = TableKeys::new("app", "users");
        let key = keys.index("email", &Value::from("../../x"), "00000000000000000001");
        assert!(key.starts_with("app/users/index/email/"));
        assert!(!key.contains(".."));
        assert_eq!(key.len(), "app/users/index/email/".len() + 64 + 1 + 20);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn namespaces() {
        assert!(check_namespace("app").is_ok());
        assert!(check_namespace("prod/app-1.x").is_ok());
        for bad in ["", "/app", "app/", "a//b", "a/../b", "a b", "ü"] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
