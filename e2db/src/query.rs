//! Queries: filters, order, skip, limit, and streaming.
//!
//! A query reads the table's rows in primary key order, page by page
//! (`PAGE_KEYS` per request), all at the revision of its first page, so it
//! sees one consistent state of the table however long it streams (unless
//! that revision is compacted meanwhile). Filters run on the decoded rows.
//! Without `order_by` the rows stream with constant memory; with it, the
//! matching rows are sorted in memory (at most `ROWS_IN_MEMORY_MAX`).
//!
//! Comparison is typed (see `Value::compare`): `lt`, `gt` and the like
//! match only values of the same type (all numbers are one type); `eq` is
//! false and `ne` true across types. Sorting orders types as null, bool,
//! numbers, strings, bytes; rows with equal values keep their primary key
//! order, and `reverse` reverses the whole order.

use std::cmp::Ordering;
use std::collections::VecDeque;

use etcd_client::{GetOptions, SortOrder, SortTarget};

use crate::error::{Error, Result};
use crate::keys::prefix_end;
use crate::row::{Decoded, Object, RowCodec};
use crate::schema::{self, Table};
use crate::table::{TableHandle, PAGE_KEYS, ROWS_IN_MEMORY_MAX};
use crate::value::Value;

/// A condition on a row's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(String, Value),
    Ne(String, Value),
    Lt(String, Value),
    Le(String, Value),
    Gt(String, Value),
    Ge(String, Value),
    In(String, Vec<Value>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

pub fn eq(field: &str, value: impl Into<Value>) -> Filter {
    Filter::Eq(field.to_string(), value.into())
}

pub fn ne(field: &str, value: impl Into<Value>) -> Filter {
    Filter::Ne(field.to_string(), value.into())
}

pub fn lt(field: &str, value: impl Into<Value>) -> Filter {
    Filter::Lt(field.to_string(), value.into())
}

pub fn le(field: &str, value: impl Into<Value>) -> Filter {
    Filter::Le(field.to_string(), value.into())
}

pub fn gt(field: &str, value: impl Into<Value>) -> Filter {
    Filter::Gt(field.to_string(), value.into())
}

pub fn ge(field: &str, value: impl Into<Value>) -> Filter {
    Filter::Ge(field.to_string(), value.into())
}

/// The field holds one of `values`.
pub fn is_in<V: Into<Value>>(field: &str, values: impl IntoIterator<Item = V>) -> Filter {
    Filter::In(
        field.to_string(),
        values.into_iter().map(Into::into).collect(),
    )
}

pub fn and(filters: impl IntoIterator<Item = Filter>) -> Filter {
    Filter::And(filters.into_iter().collect())
}

pub fn or(filters: impl IntoIterator<Item = Filter>) -> Filter {
    Filter::Or(filters.into_iter().collect())
}

pub fn not(filter: Filter) -> Filter {
    Filter::Not(Box::new(filter))
}

impl std::ops::Not for Filter {
    type Output = Filter;
    fn not(self) -> Filter {
        not(self)
    }
}

/// The most filters, counted through every `and`, `or` and `not`, in
/// one query.
pub const FILTER_NODES_MAX: usize = 1024;

impl Filter {
    /// This filter and `other`.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            first => Filter::And(vec![first, other]),
        }
    }

    /// This filter or `other`.
    pub fn or(self, other: Filter) -> Filter {
        match self {
            Filter::Or(mut any) => {
                any.push(other);
                Filter::Or(any)
            }
            first => Filter::Or(vec![first, other]),
        }
    }

    /// Refuses unknown fields, and trees too large to run.
    fn check<T: Table>(&self) -> Result<()> {
        let mut nodes = 0;
        let mut pending = vec![self];
        while let Some(filter) = pending.pop() {
            nodes += 1;
            if nodes > FILTER_NODES_MAX {
                return Err(Error::InvalidQuery {
                    table: T::NAME.to_string(),
                    detail: format!(
                        "the filter has more than {FILTER_NODES_MAX} parts; use is_in for long lists of values"
                    ),
                });
            }
            match filter {
                Filter::And(all) | Filter::Or(all) => pending.extend(all),
                Filter::Not(inner) => pending.push(inner),
                Filter::Eq(field, _)
                | Filter::Ne(field, _)
                | Filter::Lt(field, _)
                | Filter::Le(field, _)
                | Filter::Gt(field, _)
                | Filter::Ge(field, _)
                | Filter::In(field, _) => {
                    schema::field::<T>(field)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the row `object` matches.
    pub(crate) fn matches<T: Table>(&self, codec: &RowCodec, object: &Object) -> Result<bool> {
        let compare = |field: &str, value: &Value| -> Result<Option<Ordering>> {
            let held = codec.field_value(object, field).map_err(|e| match e {
                Error::InvalidRow { table, detail } => Error::InvalidQuery { table, detail },
                other => other,
            })?;
            Ok(held.compare(value))
        };
        Ok(match self {
            Filter::Eq(f, v) => compare(f, v)? == Some(Ordering::Equal),
            Filter::Ne(f, v) => compare(f, v)? != Some(Ordering::Equal),
            Filter::Lt(f, v) => compare(f, v)? == Some(Ordering::Less),
            Filter::Le(f, v) => matches!(compare(f, v)?, Some(Ordering::Less | Ordering::Equal)),
            Filter::Gt(f, v) => compare(f, v)? == Some(Ordering::Greater),
            Filter::Ge(f, v) => {
                matches!(compare(f, v)?, Some(Ordering::Greater | Ordering::Equal))
            }
            Filter::In(f, values) => {
                let mut found = false;
                for v in values {
                    if compare(f, v)? == Some(Ordering::Equal) {
                        found = true;
                        break;
                    }
                }
                found
            }
            Filter::And(all) => {
                for filter in all {
                    if !filter.matches::<T>(codec, object)? {
                        return Ok(false);
                    }
                }
                true
            }
            Filter::Or(any) => {
                for filter in any {
                    if filter.matches::<T>(codec, object)? {
                        return Ok(true);
                    }
                }
                false
            }
            Filter::Not(inner) => !inner.matches::<T>(codec, object)?,
        })
    }
}

/// A query being built; `run` or `stream` it.
pub struct Query<T> {
    table: TableHandle<T>,
    filter: Option<Filter>,
    order_by: Option<String>,
    reverse: bool,
    skip: usize,
    limit: Option<usize>,
}

impl<T: Table> Query<T> {
    pub(crate) fn new(table: TableHandle<T>) -> Query<T> {
        Query {
            table,
            filter: None,
            order_by: None,
            reverse: false,
            skip: 0,
            limit: None,
        }
    }

    /// Only rows matching `filter` (and any filter given before).
    pub fn filter(mut self, filter: Filter) -> Query<T> {
        self.filter = Some(match self.filter {
            Some(before) => before.and(filter),
            None => filter,
        });
        self
    }

    /// Rows ordered by `field` (typed comparison), ties by primary key.
    pub fn order_by(mut self, field: &str) -> Query<T> {
        self.order_by = Some(field.to_string());
        self
    }

    /// The order reversed.
    pub fn reverse(mut self) -> Query<T> {
        self.reverse = !self.reverse;
        self
    }

    /// Leaves out the first `n` matching rows.
    pub fn skip(mut self, n: usize) -> Query<T> {
        self.skip = n;
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: usize) -> Query<T> {
        self.limit = Some(n);
        self
    }

    /// The matching rows (at most `ROWS_IN_MEMORY_MAX`).
    pub async fn run(self) -> Result<Vec<T>> {
        let table = T::NAME;
        let mut stream = self.stream().await?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await {
            rows.push(row?);
            if rows.len() > ROWS_IN_MEMORY_MAX {
                return Err(Error::TooManyRows {
                    table: table.to_string(),
                    limit: ROWS_IN_MEMORY_MAX,
                });
            }
        }
        Ok(rows)
    }

    /// How many rows match (skip and limit apply).
    pub async fn count(self) -> Result<u64> {
        let mut stream = self.decoded().await?;
        let mut count = 0;
        while let Some(row) = stream.next_decoded().await {
            row?;
            count += 1;
        }
        Ok(count)
    }

    /// The matching rows one at a time: `while let Some(row) =
    /// stream.next().await`.
    pub async fn stream(self) -> Result<RowStream<T>> {
        self.decoded().await
    }

    pub(crate) async fn decoded(self) -> Result<RowStream<T>> {
        if let Some(filter) = &self.filter {
            filter.check::<T>()?;
        }
        let mut scan = Scan::new(
            &self.table,
            self.filter,
            self.reverse && self.order_by.is_none(),
        );
        let source = match &self.order_by {
            None => Source::Scan(Box::new(scan)),
            Some(field) => {
                schema::field::<T>(field)?;
                let mut keyed = Vec::new();
                while let Some(decoded) = scan.next().await {
                    let decoded = decoded?;
                    let value = self
                        .table
                        .codec
                        .field_value(&decoded.object, field)
                        .map_err(|e| match e {
                            Error::InvalidRow { table, detail } => {
                                Error::InvalidQuery { table, detail }
                            }
                            other => other,
                        })?;
                    keyed.push((value, decoded));
                    if keyed.len() > ROWS_IN_MEMORY_MAX {
                        return Err(Error::TooManyRows {
                            table: T::NAME.to_string(),
                            limit: ROWS_IN_MEMORY_MAX,
                        });
                    }
                }
                keyed.sort_by(|(a, _), (b, _)| a.total_cmp(b));
                if self.reverse {
                    keyed.reverse();
                }
                Source::Sorted(keyed.into_iter().map(|(_, d)| d).collect())
            }
        };
        Ok(RowStream {
            source,
            skip_left: self.skip,
            limit_left: self.limit,
        })
    }
}

/// Matching rows, one at a time.
pub struct RowStream<T> {
    source: Source<T>,
    skip_left: usize,
    limit_left: Option<usize>,
}

enum Source<T> {
    Scan(Box<Scan<T>>),
    Sorted(VecDeque<Decoded<T>>),
}

impl<T: Table> RowStream<T> {
    /// The next row, or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<T>> {
        self.next_decoded().await.map(|d| d.map(|d| d.row))
    }

    pub(crate) async fn next_decoded(&mut self) -> Option<Result<Decoded<T>>> {
        loop {
            if self.limit_left == Some(0) {
                return None;
            }
            let next = match &mut self.source {
                Source::Scan(scan) => scan.next().await?,
                Source::Sorted(rows) => Ok(rows.pop_front()?),
            };
            if next.is_ok() && self.skip_left > 0 {
                self.skip_left -= 1;
                continue;
            }
            if let Some(left) = &mut self.limit_left {
                *left -= 1;
            }
            return Some(next);
        }
    }
}

/// Reads matching rows in key order (or reversed), page by page, at one
/// revision.
struct Scan<T> {
    table: TableHandle<T>,
    filter: Option<Filter>,
    descending: bool,
    /// The next page starts here (ascending) or ends here (descending).
    start: Vec<u8>,
    end: Vec<u8>,
    revision: i64,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl<T: Table> Scan<T> {
    fn new(table: &TableHandle<T>, filter: Option<Filter>, descending: bool) -> Scan<T> {
        let prefix = table.codec.keys.rows_prefix().into_bytes();
        Scan {
            table: table.clone(),
            filter,
            descending,
            end: prefix_end(&prefix),
            start: prefix,
            revision: 0,
            page: VecDeque::new(),
            done: false,
        }
    }

    async fn next(&mut self) -> Option<Result<Decoded<T>>> {
        loop {
            if self.page.is_empty() {
                if self.done {
                    return None;
                }
                if let Err(e) = self.fetch_page().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            let (key, value) = self.page.pop_front()?;
            let codec = &self.table.codec;
            let decoded = match codec.decode::<T>(&key, &value) {
                Ok(decoded) => decoded,
                Err(e) => return Some(Err(e)),
            };
            match &self.filter {
                None => return Some(Ok(decoded)),
                Some(filter) => match filter.matches::<T>(codec, &decoded.object) {
                    Ok(true) => return Some(Ok(decoded)),
                    Ok(false) => continue,
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }

    async fn fetch_page(&mut self) -> Result<()> {
        let mut options = GetOptions::new()
            .with_range(self.end.clone())
            .with_limit(PAGE_KEYS)
            .with_revision(self.revision);
        if self.descending {
            options = options.with_sort(SortTarget::Key, SortOrder::Descend);
        }
        let mut response = self.table.db.get(self.start.clone(), options).await?;
        if self.revision == 0 {
            self.revision = response.header().map_or(0, |h| h.revision());
        }
        let more = response.more();
        let kvs = response.take_kvs();
        match kvs.last() {
            Some(last) if more => {
                if self.descending {
                    self.end = last.key().to_vec();
                } else {
                    self.start = [last.key(), b"\0"].concat();
                }
            }
            _ => self.done = true,
        }
        self.page = kvs.into_iter().map(|kv| kv.into_key_value()).collect();
        Ok(())
    }
}
