//! `Value`: one field's value as e2db compares, hashes and encodes it.
//!
//! Rows are JSON (serde_json), so a field's value comes from its JSON
//! form: null, a boolean, a number, a string, or an array of integers
//! 0..=255, which is how serde writes bytes. Objects and other arrays are
//! not values: they cannot be keys, indexed, filtered or sorted on.
//!
//! Integers are normalized so the same number compares and hashes the same
//! whatever Rust type wrote it: a non-negative integer is always `U64`, a
//! negative one `I64`, and a float with an exact integer value hashes as
//! that integer.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A negative integer (non-negative ones are `U64`).
    I64(i64),
    U64(u64),
    F64(f64),
    String(String),
    Bytes(Vec<u8>),
}

/// Why a JSON value is not a `Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotScalar(pub &'static str);

impl Value {
    /// The value of a JSON field, or why it has none.
    pub fn from_json(json: &Json) -> Result<Value, NotScalar> {
        match json {
            Json::Null => Ok(Value::Null),
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::Number(n) => Ok(if let Some(u) = n.as_u64() {
                Value::U64(u)
            } else if let Some(i) = n.as_i64() {
                Value::I64(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }),
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Array(items) => items
                .iter()
                .map(|item| item.as_u64().and_then(|u| u8::try_from(u).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(Value::Bytes)
                .ok_or(NotScalar("an array that is not bytes")),
            Json::Object(_) => Err(NotScalar("an object")),
        }
    }

    /// The value as JSON, as serde would have written it.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::I64(i) => Json::from(*i),
            Value::U64(u) => Json::from(*u),
            Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        }
    }

    /// Whether a `required` field counts as missing with this value.
    pub fn is_missing(&self) -> bool {
        match self {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Bytes(b) => b.is_empty(),
            _ => false,
        }
    }

    /// The value as an integer, when it is one exactly.
    fn as_i128(&self) -> Option<i128> {
        match self {
            Value::I64(i) => Some(i128::from(*i)),
            Value::U64(u) => Some(i128::from(*u)),
            Value::F64(f) if f.fract() == 0.0 && f.abs() < 1.9e19 => Some(*f as i128),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::I64(i) => Some(*i as f64),
            Value::U64(u) => Some(*u as f64),
            Value::F64(f) => Some(*f),
            _ => None,
        }
    }

    /// Rank of the type in the total order: null, bool, numbers, strings,
    /// bytes.
    fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I64(_) | Value::U64(_) | Value::F64(_) => 2,
            Value::String(_) => 3,
            Value::Bytes(_) => 4,
        }
    }

    /// Comparison within a type (all numbers are one type); `None` across
    /// types. Filters use this: `lt`, `gt` never match a value of another
    /// type.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (Value::Bytes(a), Value::Bytes(b)) => Some(a.cmp(b)),
            (a, b) => match (a.as_i128(), b.as_i128()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => Some(a.as_f64()?.total_cmp(&b.as_f64()?)),
            },
        }
    }

    /// A total order for sorting: by type (null, bool, numbers, strings,
    /// bytes), then within the type.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        self.type_rank()
            .cmp(&other.type_rank())
            .then_with(|| self.compare(other).unwrap_or(Ordering::Equal))
    }

    /// Bytes that are equal exactly when the values are equal; index keys
    /// hold their SHA-256.
    pub fn encode(&self) -> Vec<u8> {
        if let Some(i) = self.as_i128() {
            let mut out = vec![b'i'];
            out.extend_from_slice(&i.to_be_bytes());
            return out;
        }
        match self {
            Value::Null => vec![b'n'],
            Value::Bool(b) => vec![b'b', u8::from(*b)],
            Value::F64(f) => {
                let mut out = vec![b'f'];
                out.extend_from_slice(&f.to_bits().to_be_bytes());
                out
            }
            Value::String(s) => [b"s".as_slice(), s.as_bytes()].concat(),
            Value::Bytes(b) => [b"x".as_slice(), b].concat(),
            Value::I64(_) | Value::U64(_) => unreachable!("integers are encoded above"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::I64(i) => write!(f, "{i}"),
            Value::U64(u) => write!(f, "{u}"),
            Value::F64(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "{} bytes", b.len()),
        }
    }
}

macro_rules! from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::U64(v as u64)
            }
        }
    )*};
}
from_unsigned!(u8, u16, u32, u64, usize);

macro_rules! from_signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                let v = v as i64;
                if v >= 0 {
                    Value::U64(v as u64)
                } else {
                    Value::I64(v)
                }
            }
        }
    )*};
}
from_signed!(i8, i16, i32, i64, isize);

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::F64(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::F64(f64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::String(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::String(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<&Value> for Value {
    fn from(v: &Value) -> Value {
        v.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_from_any_type_are_one_value() {
        assert_eq!(Value::from(5i32), Value::from(5u64));
        assert_eq!(Value::from(-5i8), Value::I64(-5));
        let json = serde_json::to_value(7i64).unwrap();
        assert_eq!(Value::from_json(&json), Ok(Value::U64(7)));
        assert_eq!(Value::from(1.0f64).encode(), Value::from(1u8).encode());
        assert_ne!(Value::from(1.5f64).encode(), Value::from(1u8).encode());
    }

    #[test]
    fn bytes_and_composites_from_json() {
        let json = serde_json::to_value(vec![1u8, 255]).unwrap();
        assert_eq!(Value::from_json(&json), Ok(Value::Bytes(vec![1, 255])));
        let json = serde_json::json!([1, 300]);
        assert!(Value::from_json(&json).is_err());
        assert!(Value::from_json(&serde_json::json!({"a": 1})).is_err());
    }

    #[test]
    fn comparison_within_and_across_types() {
        use Ordering::*;
        assert_eq!(Value::from(-1).compare(&Value::from(2u8)), Some(Less));
        assert_eq!(Value::from(2.5).compare(&Value::from(2u8)), Some(Greater));
        assert_eq!(Value::from("a").compare(&Value::from(1)), None);
        assert_eq!(Value::Null.total_cmp(&Value::from(false)), Less);
        assert_eq!(Value::from(9).total_cmp(&Value::from("")), Less);
        assert_eq!(Value::from("b").total_cmp(&Value::from(vec![0u8])), Less);
    }

    #[test]
    fn encodings_differ_across_types() {
        let values = [
            Value::Null,
            Value::from(false),
            Value::from(0),
            Value::from(0.5),
            Value::from(""),
            Value::from(Vec::new()),
            Value::from("0"),
        ];
        for (i, a) in values.iter().enumerate() {
            for b in &values[i + 1..] {
                assert_ne!(a.encode(), b.encode(), "{a:?} vs {b:?}");
            }
        }
    }
}
