//! Schemas: what `#[derive(e2db::Table)]` declares, and its stored form.
//!
//! The first open of a table stores its schema under `<ns>/<table>/schema`;
//! every later open compares the stored schema with the code's and refuses
//! a difference with `Error::SchemaMismatch`, saying which. A changed
//! struct must raise its `version` (so two builds that disagree cannot
//! both write), and a table whose stored schema is older is then refused
//! until it is dropped or rewritten: e2db does not migrate rows.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A row type: `#[derive(e2db::Table)]` implements it.
///
/// The derive refuses at compile time a table without a primary key:
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, e2db::Table)]
/// struct NoKey { name: String }
/// ```
///
/// an encrypted field in an index:
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, e2db::Table)]
/// struct Leaky { #[e2db(id)] id: u64, #[e2db(encrypted, index)] secret: String }
/// ```
///
/// and a table name that is not safe in a key:
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize, e2db::Table)]
/// #[e2db(table = "../etc")]
/// struct Escape { #[e2db(id)] id: u64 }
/// ```
///
/// while this is a table:
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, e2db::Table)]
/// #[e2db(table = "notes", version = 3)]
/// struct Note {
///     #[e2db(id)]
///     #[serde(rename = "key")]
///     id: String,
///     #[e2db(unique, required)]
///     title: String,
/// }
/// use e2db::Table as _;
/// assert_eq!((Note::NAME, Note::VERSION), ("notes", 3));
/// assert_eq!(Note::FIELDS[0].name, "key");
/// assert!(Note::FIELDS[1].unique && Note::FIELDS[1].index && Note::FIELDS[1].required);
/// ```
pub trait Table: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The table's name in the key space.
    const NAME: &'static str;
    /// The schema version; raise it when the fields or their attributes
    /// change.
    const VERSION: u32;
    /// Every field, in declaration order.
    const FIELDS: &'static [Field];
}

/// One field of a table and its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The name serde writes.
    pub name: &'static str,
    /// The primary key.
    pub id: bool,
    /// The primary key, given from a counter when the row has 0 or null.
    pub increment: bool,
    /// Looked up by `find_by`.
    pub index: bool,
    /// No two rows share a non-null value (implies `index`).
    pub unique: bool,
    /// Never null or empty.
    pub required: bool,
    /// Stored sealed with the configured key.
    pub encrypted: bool,
}

/// The schema as stored with the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    pub table: String,
    pub version: u32,
    pub fields: Vec<StoredField>,
    /// The id of the key that seals the table's encrypted fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredField {
    pub name: String,
    /// The attributes that are set, in a fixed order: `id`, `increment`,
    /// `index`, `unique`, `required`, `encrypted`.
    pub attributes: Vec<String>,
}

impl StoredSchema {
    /// The schema `T` declares, with the id of the key that seals its
    /// encrypted fields.
    pub fn of<T: Table>(key_id: Option<&str>) -> StoredSchema {
        let has_encrypted = T::FIELDS.iter().any(|f| f.encrypted);
        StoredSchema {
            table: T::NAME.to_string(),
            version: T::VERSION,
            fields: T::FIELDS.iter().map(StoredField::of).collect(),
            key_id: key_id.filter(|_| has_encrypted).map(str::to_string),
        }
    }

    /// Why `stored` cannot be used as `self` (the code's schema), if it
    /// cannot.
    pub fn check_stored(&self, stored: &StoredSchema) -> Result<()> {
        let mismatch = |detail: String| Error::SchemaMismatch {
            table: self.table.clone(),
            detail,
        };
        if stored.fields != self.fields || stored.table != self.table {
            let describe = |s: &StoredSchema| {
                s.fields
                    .iter()
                    .map(|f| format!("{}({})", f.name, f.attributes.join(",")))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let hint = if stored.version == self.version {
                "the struct changed without a new version: raise #[e2db(version = N)], then drop the table or rewrite it"
            } else {
                "the table was written by another version of the struct: drop it or rewrite it with a matching version"
            };
            return Err(mismatch(format!(
                "stored schema version {} has fields [{}]; the code declares version {} with [{}]; {hint}",
                stored.version,
                describe(stored),
                self.version,
                describe(self)
            )));
        }
        if stored.version != self.version {
            return Err(mismatch(format!(
                "stored schema is version {}, the code declares version {} with the same fields; use the stored version or drop the table",
                stored.version, self.version
            )));
        }
        if stored.key_id != self.key_id {
            return Err(Error::Key {
                table: self.table.clone(),
                detail: format!(
                    "encrypted fields were sealed with key id {}, the configured key has id {}; configure the table's key",
                    stored.key_id.as_deref().unwrap_or("none"),
                    self.key_id.as_deref().unwrap_or("none")
                ),
            });
        }
        Ok(())
    }
}

impl StoredField {
    fn of(field: &Field) -> StoredField {
        let attributes = [
            ("id", field.id),
            ("increment", field.increment),
            ("index", field.index),
            ("unique", field.unique),
            ("required", field.required),
            ("encrypted", field.encrypted),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_string())
        .collect();
        StoredField {
            name: field.name.to_string(),
            attributes,
        }
    }
}

/// Checks what the derive macro checks, for a `Table` written by hand.
pub fn validate<T: Table>() -> Result<()> {
    let invalid = |detail: String| Error::SchemaMismatch {
        table: T::NAME.to_string(),
        detail,
    };
    crate::keys::check_table_name(T::NAME).map_err(invalid)?;
    let ids = T::FIELDS.iter().filter(|f| f.id).count();
    if ids != 1 {
        return Err(invalid(format!(
            "the table has {ids} primary keys; mark exactly one field `id` or `increment`"
        )));
    }
    for (i, field) in T::FIELDS.iter().enumerate() {
        if T::FIELDS[..i].iter().any(|f| f.name == field.name) {
            return Err(invalid(format!("field `{}` is declared twice", field.name)));
        }
        if field.increment && !field.id {
            return Err(invalid(format!(
                "`{}`: increment is for the primary key",
                field.name
            )));
        }
        if field.encrypted && (field.id || field.index || field.unique) {
            return Err(invalid(format!(
                "`{}`: an encrypted field cannot be a key or an index",
                field.name
            )));
        }
        let safe_name = !field.name.is_empty()
            && field
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if field.index && !safe_name {
            return Err(invalid(format!(
                "indexed field {:?} needs a name of letters, digits, `_` or `-`: it is part of a key",
                field.name
            )));
        }
        if field.unique && !field.index {
            return Err(invalid(format!(
                "`{}`: a unique field is an index too",
                field.name
            )));
        }
    }
    Ok(())
}

/// The primary key field of `T`; [`validate`] makes sure there is one.
pub fn primary_key<T: Table>() -> &'static Field {
    T::FIELDS
        .iter()
        .find(|f| f.id)
        .expect("#[derive(e2db::Table)] requires exactly one primary key")
}

/// The field of `T` named `name`, or an error listing the fields.
pub fn field<T: Table>(name: &str) -> Result<&'static Field> {
    T::FIELDS
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| Error::InvalidQuery {
            table: T::NAME.to_string(),
            detail: format!(
                "no field `{name}`; the fields are {}",
                T::FIELDS
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table written by hand, with `FIELDS` chosen by the test.
    macro_rules! hand_table {
        ($name:ident, $fields:expr) => {
            #[derive(serde::Serialize, serde::Deserialize)]
            struct $name;
            impl Table for $name {
                const NAME: &'static str = "hand";
                const VERSION: u32 = 1;
                const FIELDS: &'static [Field] = $fields;
            }
        };
    }

    const PLAIN: Field = Field {
        name: "f",
        id: false,
        increment: false,
        index: false,
        unique: false,
        required: false,
        encrypted: false,
    };

    #[test]
    fn hand_written_tables_are_checked() {
        hand_table!(NoKey, &[PLAIN]);
        hand_table!(
            TwoKeys,
            &[
                Field { id: true, ..PLAIN },
                Field {
                    name: "g",
                    id: true,
                    ..PLAIN
                }
            ]
        );
        hand_table!(Twice, &[Field { id: true, ..PLAIN }, PLAIN]);
        hand_table!(
            BadIndex,
            &[
                Field { id: true, ..PLAIN },
                Field {
                    name: "a/b",
                    index: true,
                    ..PLAIN
                }
            ]
        );
        hand_table!(
            Good,
            &[
                Field { id: true, ..PLAIN },
                Field {
                    name: "g",
                    index: true,
                    ..PLAIN
                }
            ]
        );
        let refusal = |r: Result<()>| match r {
            Err(Error::SchemaMismatch { detail, .. }) => detail,
            other => panic!("accepted: {other:?}"),
        };
        assert!(refusal(validate::<NoKey>()).contains("0 primary keys"));
        assert!(refusal(validate::<TwoKeys>()).contains("2 primary keys"));
        assert!(refusal(validate::<Twice>()).contains("declared twice"));
        assert!(refusal(validate::<BadIndex>()).contains("part of a key"));
        validate::<Good>().unwrap();
    }
}
