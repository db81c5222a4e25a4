//! Rows as they are stored: serde_json of the struct, a JSON object whose
//! keys are the field names, with every `encrypted` field's value replaced
//! by its sealed form (see `seal`). Field values for keys, indexes,
//! filters and sorting are read from that object (see `value`).

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::keys::{encode_pk, TableKeys};
use crate::schema::{primary_key, Table};
use crate::seal::EncryptionKey;
use crate::value::Value;

/// A row as a JSON object (plaintext).
pub type Object = Map<String, Json>;

/// A row read back: its key segment, its object and its typed value.
#[derive(Debug, Clone)]
pub struct Decoded<T> {
    pub pk: String,
    pub object: Object,
    pub row: T,
}

/// Encodes and decodes the rows of one table.
#[derive(Debug, Clone)]
pub struct RowCodec {
    pub table: &'static str,
    pub keys: TableKeys,
    pub seal: Option<EncryptionKey>,
}

impl RowCodec {
    fn invalid(&self, detail: String) -> Error {
        Error::InvalidRow {
            table: self.table.to_string(),
            detail,
        }
    }

    /// The row as a JSON object.
    pub fn to_object<T: Table>(&self, row: &T) -> Result<Object> {
        match serde_json::to_value(row) {
            Ok(Json::Object(object)) => Ok(object),
            Ok(other) => Err(self.invalid(format!(
                "a row must serialize to a JSON object, this one is {other}"
            ))),
            Err(e) => Err(self.invalid(format!("the row does not serialize: {e}"))),
        }
    }

    /// The value of `field` in `object` (a missing field is null).
    pub fn field_value(&self, object: &Object, field: &str) -> Result<Value> {
        match object.get(field) {
            None => Ok(Value::Null),
            Some(json) => Value::from_json(json).map_err(|why| {
                self.invalid(format!(
                    "field `{field}` holds {}; keys, indexes, filters and sorting take null, booleans, numbers, strings or bytes",
                    why.0
                ))
            }),
        }
    }

    /// The primary key of `object` and its key segment.
    pub fn primary_key<T: Table>(&self, object: &Object) -> Result<(Value, String)> {
        let field = primary_key::<T>();
        let value = self.field_value(object, field.name)?;
        let segment = encode_pk(&value)
            .map_err(|why| self.invalid(format!("primary key `{}`: {why}", field.name)))?;
        Ok((value, segment))
    }

    /// Refuses a row whose `required` fields are null or empty.
    pub fn check_required<T: Table>(&self, object: &Object) -> Result<()> {
        for field in T::FIELDS.iter().filter(|f| f.required) {
            let missing = match object.get(field.name) {
                None => true,
                Some(Json::Array(items)) => items.is_empty(),
                Some(Json::Object(map)) => map.is_empty(),
                Some(json) => Value::from_json(json).is_ok_and(|v| v.is_missing()),
            };
            if missing {
                return Err(Error::RequiredMissing {
                    table: self.table.to_string(),
                    field: field.name.to_string(),
                });
            }
        }
        Ok(())
    }

    fn binding(&self, field: &str, pk: &str) -> Vec<u8> {
        format!("{}{field}/{pk}", self.keys.table_prefix()).into_bytes()
    }

    fn seal_key(&self) -> Result<&EncryptionKey> {
        self.seal.as_ref().ok_or_else(|| Error::Key {
            table: self.table.to_string(),
            detail: "the table has encrypted fields and no encryption key is configured; set Config::encryption_key (or E2DB_ENCRYPTION_KEY_FILE)".into(),
        })
    }

    /// The stored bytes of a row whose key segment is `pk`.
    pub fn encode<T: Table>(&self, object: &Object, pk: &str) -> Result<Vec<u8>> {
        let mut stored = object.clone();
        for field in T::FIELDS.iter().filter(|f| f.encrypted) {
            let plain = stored.get(field.name).cloned().unwrap_or(Json::Null);
            let plain = serde_json::to_vec(&plain).map_err(|e| self.invalid(e.to_string()))?;
            let sealed = self
                .seal_key()?
                .seal(&self.binding(field.name, pk), &plain)
                .map_err(|why| self.invalid(format!("field `{}`: {why}", field.name)))?;
            stored.insert(field.name.to_string(), Json::String(sealed));
        }
        serde_json::to_vec(&stored).map_err(|e| self.invalid(e.to_string()))
    }

    /// A stored row read back from `key` = `value`.
    pub fn decode<T: Table>(&self, key: &[u8], value: &[u8]) -> Result<Decoded<T>> {
        let key_text = String::from_utf8_lossy(key);
        let fail = |detail: String| Error::Decode {
            table: self.table.to_string(),
            key: key_text.to_string(),
            detail,
        };
        let pk = self
            .keys
            .pk_of_row(&key_text)
            .ok_or_else(|| fail("not a row key of this table".into()))?
            .to_string();
        let mut object = match serde_json::from_slice(value) {
            Ok(Json::Object(object)) => object,
            Ok(_) => return Err(fail("the row is not a JSON object".into())),
            Err(e) => return Err(fail(format!("the row is not JSON: {e}"))),
        };
        for field in T::FIELDS.iter().filter(|f| f.encrypted) {
            let Some(Json::String(sealed)) = object.get(field.name) else {
                return Err(fail(format!(
                    "encrypted field `{}` is not sealed",
                    field.name
                )));
            };
            let plain = self
                .seal_key()?
                .open(&self.binding(field.name, &pk), sealed)
                .map_err(|why| fail(format!("field `{}`: {why}", field.name)))?;
            let plain = serde_json::from_slice(&plain)
                .map_err(|e| fail(format!("field `{}` opens to no JSON: {e}", field.name)))?;
            object.insert(field.name.to_string(), plain);
        }
        let row = serde_json::from_value(Json::Object(object.clone()))
            .map_err(|e| fail(format!("the row does not fit the struct: {e}")))?;
        Ok(Decoded { pk, object, row })
    }
}
