//! `#[derive(e2db::Table)]`: a struct with named fields becomes an e2db
//! table. Use it through the `e2db` crate, which re-exports it.
//!
//! ```text
//! #[derive(Serialize, Deserialize, e2db::Table)]
//! #[e2db(table = "users", version = 1)]
//! struct User {
//!     #[e2db(increment)] id: u64,
//!     #[e2db(unique, required)] email: String,
//!     #[e2db(index)] team: String,
//!     #[e2db(encrypted)] secret: String,
//! }
//! ```
//!
//! Everything the macro can check is checked here, at compile time: one
//! primary key, no encrypted field in an index, table names that are safe
//! in a key.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Error, Fields, LitInt, LitStr, Meta, Token};

/// The longest table name accepted, in bytes.
const TABLE_NAME_MAX_BYTES: usize = 64;

#[proc_macro_derive(Table, attributes(e2db))]
pub fn derive_table(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// What the field attributes say about one field.
#[derive(Default)]
struct FieldFlags {
    id: bool,
    increment: bool,
    index: bool,
    unique: bool,
    required: bool,
    encrypted: bool,
}

struct TableAttrs {
    name: String,
    version: u32,
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(Error::new(
            input.span(),
            "e2db::Table needs a struct with named fields (a table row)",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(Error::new(
            input.span(),
            "e2db::Table needs named fields: each field is a column",
        ));
    };
    refuse_serde_rename_all(input)?;
    let table = table_attrs(input)?;

    let mut fields = Vec::new();
    let mut primary_keys = Vec::new();
    for field in &named.named {
        let ident = field.ident.as_ref().expect("named fields have names");
        let flags = field_flags(field)?;
        let name = serde_name(field)?.unwrap_or_else(|| unraw(&ident.to_string()));
        if flags.id {
            primary_keys.push((name.clone(), field.span()));
        }
        fields.push((name, flags));
    }
    match primary_keys.len() {
        1 => {}
        0 => {
            return Err(Error::new(
                input.ident.span(),
                "an e2db table needs a primary key: mark one field #[e2db(id)] or #[e2db(increment)]",
            ))
        }
        _ => {
            return Err(Error::new(
                primary_keys[1].1,
                "an e2db table has one primary key; this is the second #[e2db(id)] or #[e2db(increment)]",
            ))
        }
    }

    let field_tokens = fields.iter().map(|(name, f)| {
        let (id, increment, index, unique, required, encrypted) = (
            f.id,
            f.increment,
            f.index,
            f.unique,
            f.required,
            f.encrypted,
        );
        quote! {
            ::e2db::Field {
                name: #name,
                id: #id,
                increment: #increment,
                index: #index,
                unique: #unique,
                required: #required,
                encrypted: #encrypted,
            }
        }
    });
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let (table_name, version) = (&table.name, table.version);
    Ok(quote! {
        impl #impl_generics ::e2db::Table for #ident #type_generics #where_clause {
            const NAME: &'static str = #table_name;
            const VERSION: u32 = #version;
            const FIELDS: &'static [::e2db::Field] = &[#(#field_tokens),*];
        }
    })
}

/// `#[e2db(table = "...", version = N)]` on the struct; the table name
/// defaults to the struct's name in snake case.
fn table_attrs(input: &DeriveInput) -> syn::Result<TableAttrs> {
    let mut name = None;
    let mut version = 1u32;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("e2db")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                let lit: LitStr = meta.value()?.parse()?;
                name = Some((lit.value(), lit.span()));
                Ok(())
            } else if meta.path.is_ident("version") {
                let lit: LitInt = meta.value()?.parse()?;
                version = lit.base10_parse()?;
                if version == 0 {
                    return Err(Error::new(lit.span(), "schema versions start at 1"));
                }
                Ok(())
            } else {
                Err(meta.error(
                    "unknown e2db table attribute; expected `table = \"name\"` or `version = N`",
                ))
            }
        })?;
    }
    let (name, span) =
        name.unwrap_or_else(|| (snake_case(&input.ident.to_string()), input.ident.span()));
    check_table_name(&name, span)?;
    Ok(TableAttrs { name, version })
}

fn check_table_name(name: &str, span: Span) -> syn::Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > TABLE_NAME_MAX_BYTES || !valid_chars {
        return Err(Error::new(
            span,
            format!(
                "table name {name:?} is not allowed: use 1 to {TABLE_NAME_MAX_BYTES} lowercase letters, digits, `_` or `-`"
            ),
        ));
    }
    Ok(())
}

fn field_flags(field: &syn::Field) -> syn::Result<FieldFlags> {
    let mut flags = FieldFlags::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("e2db")) {
        attr.parse_nested_meta(|meta| {
            let flag = match meta.path.get_ident().map(|i| i.to_string()).as_deref() {
                Some("id") => &mut flags.id,
                Some("increment") => &mut flags.increment,
                Some("index") => &mut flags.index,
                Some("unique") => &mut flags.unique,
                Some("required") => &mut flags.required,
                Some("encrypted") => &mut flags.encrypted,
                _ => {
                    return Err(meta.error(
                        "unknown e2db field attribute; expected id, increment, index, unique, required or encrypted",
                    ))
                }
            };
            *flag = true;
            Ok(())
        })?;
    }
    if flags.increment {
        flags.id = true;
    }
    let span = field.span();
    if flags.id && (flags.index || flags.unique) {
        return Err(Error::new(
            span,
            "the primary key is unique and looked up directly; drop `index` / `unique` here",
        ));
    }
    if flags.encrypted && (flags.id || flags.index || flags.unique) {
        return Err(Error::new(
            span,
            "an encrypted field cannot be a key or an index: its value would show in the key space",
        ));
    }
    if flags.unique {
        flags.index = true;
    }
    Ok(flags)
}

/// The name serde writes for the field, when `#[serde(rename = "...")]`
/// changes it.
fn serde_name(field: &syn::Field) -> syn::Result<Option<String>> {
    let mut name = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let metas = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
        for meta in metas {
            match meta {
                Meta::NameValue(nv) if nv.path.is_ident("rename") => {
                    if let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) = &nv.value
                    {
                        name = Some(s.value());
                    }
                }
                Meta::List(list) if list.path.is_ident("rename") => {
                    return Err(Error::new(
                        list.span(),
                        "e2db reads one field name for reading and writing: use `rename = \"...\"`",
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(name)
}

fn refuse_serde_rename_all(input: &DeriveInput) -> syn::Result<()> {
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let metas = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
        for meta in metas {
            if meta.path().is_ident("rename_all") {
                return Err(Error::new(
                    meta.span(),
                    "e2db does not follow serde's `rename_all`; rename single fields with #[serde(rename = \"...\")]",
                ));
            }
        }
    }
    Ok(())
}

fn unraw(name: &str) -> String {
    name.strip_prefix("r#").unwrap_or(name).to_string()
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
