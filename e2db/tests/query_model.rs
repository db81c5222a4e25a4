//! Queries against a model: random tables and random queries (filters,
//! order, reverse, skip, limit) run on the server through e2db and on a
//! plain in-memory list; the rows must be the same, in the same order.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

use e2d_tests::Server;
use e2db::{Config, Db, Filter, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "items")]
struct Item {
    #[e2db(id)]
    id: i64,
    #[e2db(index)]
    n: i64,
    x: f64,
    s: String,
    b: bool,
    o: Option<i64>,
}

const FIELDS: [&str; 6] = ["id", "n", "x", "s", "b", "o"];

/// A value as the model sees it: numbers are one type.
#[derive(Debug, Clone, PartialEq)]
enum ModelValue {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

impl ModelValue {
    fn rank(&self) -> u8 {
        match self {
            ModelValue::Null => 0,
            ModelValue::Bool(_) => 1,
            ModelValue::Num(_) => 2,
            ModelValue::Str(_) => 3,
        }
    }

    fn compare(&self, other: &ModelValue) -> Option<Ordering> {
        match (self, other) {
            (ModelValue::Null, ModelValue::Null) => Some(Ordering::Equal),
            (ModelValue::Bool(a), ModelValue::Bool(b)) => Some(a.cmp(b)),
            (ModelValue::Num(a), ModelValue::Num(b)) => a.partial_cmp(b),
            (ModelValue::Str(a), ModelValue::Str(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    fn sort_cmp(&self, other: &ModelValue) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| self.compare(other).unwrap_or(Ordering::Equal))
    }

    fn to_value(&self) -> Value {
        match self {
            ModelValue::Null => Value::Null,
            ModelValue::Bool(b) => Value::from(*b),
            // Whole numbers go as integers, the others as floats.
            ModelValue::Num(x) if x.fract() == 0.0 => Value::from(*x as i64),
            ModelValue::Num(x) => Value::from(*x),
            ModelValue::Str(s) => Value::from(s.as_str()),
        }
    }
}

fn field_of(item: &Item, field: &str) -> ModelValue {
    match field {
        "id" => ModelValue::Num(item.id as f64),
        "n" => ModelValue::Num(item.n as f64),
        "x" => ModelValue::Num(item.x),
        "s" => ModelValue::Str(item.s.clone()),
        "b" => ModelValue::Bool(item.b),
        "o" => item
            .o
            .map_or(ModelValue::Null, |o| ModelValue::Num(o as f64)),
        other => unreachable!("no field {other}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum ModelFilter {
    Compare(&'static str, Op, ModelValue),
    In(&'static str, Vec<ModelValue>),
    And(Vec<ModelFilter>),
    Or(Vec<ModelFilter>),
    Not(Box<ModelFilter>),
}

impl ModelFilter {
    fn matches(&self, item: &Item) -> bool {
        match self {
            ModelFilter::Compare(field, op, value) => {
                let ordering = field_of(item, field).compare(value);
                match op {
                    Op::Eq => ordering == Some(Ordering::Equal),
                    Op::Ne => ordering != Some(Ordering::Equal),
                    Op::Lt => ordering == Some(Ordering::Less),
                    Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                    Op::Gt => ordering == Some(Ordering::Greater),
                    Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
                }
            }
            ModelFilter::In(field, values) => values
                .iter()
                .any(|v| field_of(item, field).compare(v) == Some(Ordering::Equal)),
            ModelFilter::And(all) => all.iter().all(|f| f.matches(item)),
            ModelFilter::Or(any) => any.iter().any(|f| f.matches(item)),
            ModelFilter::Not(inner) => !inner.matches(item),
        }
    }

    fn to_filter(&self) -> Filter {
        match self {
            ModelFilter::Compare(field, op, value) => {
                let value = value.to_value();
                match op {
                    Op::Eq => e2db::eq(field, value),
                    Op::Ne => e2db::ne(field, value),
                    Op::Lt => e2db::lt(field, value),
                    Op::Le => e2db::le(field, value),
                    Op::Gt => e2db::gt(field, value),
                    Op::Ge => e2db::ge(field, value),
                }
            }
            ModelFilter::In(field, values) => {
                e2db::is_in(field, values.iter().map(ModelValue::to_value))
            }
            ModelFilter::And(all) => e2db::and(all.iter().map(ModelFilter::to_filter)),
            ModelFilter::Or(any) => e2db::or(any.iter().map(ModelFilter::to_filter)),
            ModelFilter::Not(inner) => !inner.to_filter(),
        }
    }
}

#[derive(Debug, Clone)]
struct ModelQuery {
    filter: Option<ModelFilter>,
    order_by: Option<&'static str>,
    reverse: bool,
    skip: usize,
    limit: Option<usize>,
}

impl ModelQuery {
    fn run(&self, items: &[Item]) -> Vec<i64> {
        let mut rows: Vec<&Item> = items.iter().collect();
        rows.sort_by_key(|item| item.id);
        rows.retain(|item| self.filter.as_ref().is_none_or(|f| f.matches(item)));
        if let Some(field) = self.order_by {
            rows.sort_by(|a, b| field_of(a, field).sort_cmp(&field_of(b, field)));
        }
        if self.reverse {
            rows.reverse();
        }
        rows.into_iter()
            .skip(self.skip)
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|item| item.id)
            .collect()
    }
}

fn item() -> impl Strategy<Value = Item> {
    (
        -40i64..40,
        -4i64..4,
        prop_oneof![(-3i64..3).prop_map(|x| x as f64), -3.0f64..3.0],
        "[ab]{0,2}",
        any::<bool>(),
        proptest::option::of(-2i64..2),
    )
        .prop_map(|(id, n, x, s, b, o)| Item { id, n, x, s, b, o })
}

fn model_value() -> impl Strategy<Value = ModelValue> {
    prop_oneof![
        4 => (-5i64..5).prop_map(|n| ModelValue::Num(n as f64)),
        1 => (-3.0f64..3.0).prop_map(ModelValue::Num),
        2 => "[ab]{0,2}".prop_map(ModelValue::Str),
        1 => any::<bool>().prop_map(ModelValue::Bool),
        1 => Just(ModelValue::Null),
    ]
}

fn field() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(FIELDS.to_vec())
}

fn model_filter() -> impl Strategy<Value = ModelFilter> {
    let op = proptest::sample::select(vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge]);
    let leaf = prop_oneof![
        4 => (field(), op, model_value()).prop_map(|(f, op, v)| ModelFilter::Compare(f, op, v)),
        1 => (field(), proptest::collection::vec(model_value(), 0..4))
            .prop_map(|(f, values)| ModelFilter::In(f, values)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(ModelFilter::And),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(ModelFilter::Or),
            inner.prop_map(|f| ModelFilter::Not(Box::new(f))),
        ]
    })
}

fn model_query() -> impl Strategy<Value = ModelQuery> {
    (
        proptest::option::of(model_filter()),
        proptest::option::of(field()),
        any::<bool>(),
        prop_oneof![3 => Just(0usize), 1 => 0usize..8],
        proptest::option::of(0usize..12),
    )
        .prop_map(|(filter, order_by, reverse, skip, limit)| ModelQuery {
            filter,
            order_by,
            reverse,
            skip,
            limit,
        })
}

async fn server_query(db: &Db, query: &ModelQuery) -> e2db::Result<Vec<i64>> {
    let items = db.table::<Item>().await?;
    let mut q = items.query().skip(query.skip);
    if let Some(filter) = &query.filter {
        q = q.filter(filter.to_filter());
    }
    if let Some(field) = query.order_by {
        q = q.order_by(field);
    }
    if query.reverse {
        q = q.reverse();
    }
    if let Some(limit) = query.limit {
        q = q.limit(limit);
    }
    Ok(q.run().await?.into_iter().map(|item| item.id).collect())
}

#[test]
fn queries_agree_with_a_model() {
    let s = Server::e2d();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let namespaces = AtomicU32::new(0);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 12,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = (
        proptest::collection::vec(item(), 0..50),
        proptest::collection::vec(model_query(), 1..25),
    );
    let result = runner.run(&strategy, |(items, queries)| {
        runtime.block_on(async {
            let namespace = format!("model{}", namespaces.fetch_add(1, AtomicOrdering::SeqCst));
            let db = Db::connect(Config::new([s.url()]).namespace(namespace))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let table = db
                .table::<Item>()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut unique = std::collections::BTreeMap::new();
            for item in items {
                unique.insert(item.id, item);
            }
            let items: Vec<Item> = unique.into_values().collect();
            for chunk in items.chunks(20) {
                db.tx(|tx| {
                    Box::pin(async move {
                        for item in chunk {
                            tx.insert(item.clone()).await?;
                        }
                        Ok(())
                    })
                })
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(table.count().await.unwrap(), items.len() as u64);
            for query in &queries {
                let got = server_query(&db, query)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{query:?}: {e}")))?;
                prop_assert_eq!(got, query.run(&items), "query {:?}", query);
            }
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
