//! The log of `e2d run`: one `tracing` subscriber, writing text or JSON
//! lines, that also carries raft-rs's own lines (raft-rs logs through
//! `slog`; [`raft_logger`] forwards them).
//!
//! A JSON line is one object: `time` (RFC 3339, UTC), `level`, `message`,
//! `target`, the member's `member` name and `cluster_id` (hex) once known,
//! and the event's own fields.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::sync::RwLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Who is logging: set once the member's name and cluster are known.
#[derive(Debug, Default, Clone)]
struct Identity {
    member: Option<String>,
    cluster_id: Option<u64>,
}

static IDENTITY: RwLock<Identity> = RwLock::new(Identity {
    member: None,
    cluster_id: None,
});

/// Every following line names member `name`.
pub fn set_member(name: &str) {
    if let Ok(mut identity) = IDENTITY.write() {
        identity.member = Some(name.to_string());
    }
}

/// Every following line names cluster `cluster_id`.
pub fn set_cluster(cluster_id: u64) {
    if let Ok(mut identity) = IDENTITY.write() {
        identity.cluster_id = Some(cluster_id);
    }
}

fn identity() -> Identity {
    IDENTITY.read().map(|i| i.clone()).unwrap_or_default()
}

/// Installs the process's subscriber, writing to stdout.
pub fn init(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
}

/// Keys a JSON line sets itself; an event field of the same name is
/// written as `field.<name>`.
const RESERVED_KEYS: [&str; 6] = ["time", "level", "message", "target", "member", "cluster_id"];

/// Formats an event as one JSON object.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let identity = identity();
        let meta = event.metadata();
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = String::with_capacity(256);
        line.push('{');
        push_pair(&mut line, "time", &time.into());
        push_pair(&mut line, "level", &level_name(*meta.level()).into());
        push_pair(
            &mut line,
            "message",
            &fields.message.unwrap_or_default().into(),
        );
        push_pair(&mut line, "target", &meta.target().into());
        if let Some(member) = identity.member {
            push_pair(&mut line, "member", &member.into());
        }
        if let Some(cluster_id) = identity.cluster_id {
            push_pair(&mut line, "cluster_id", &format!("{cluster_id:x}").into());
        }
        for (key, value) in &fields.fields {
            if RESERVED_KEYS.contains(&key.as_str()) {
                push_pair(&mut line, &format!("field.{key}"), value);
            } else {
                push_pair(&mut line, key, value);
            }
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Appends `"key":value` to an object being written.
fn push_pair(line: &mut String, key: &str, value: &serde_json::Value) {
    if !line.ends_with('{') {
        line.push(',');
    }
    // Strings and JSON values always serialize.
    line.push_str(&serde_json::to_string(key).unwrap_or_default());
    line.push(':');
    line.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// An event's message and fields, in the order they were recorded.
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are not JSON numbers.
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string().into(), serde_json::Value::Number);
        self.put(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
}

/// A logger for raft-rs whose lines go to `tracing`, target `raft`.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(ToTracing, slog::o!())
}

/// A `slog` drain that forwards each record to `tracing`: slog's
/// critical and error are error, warning is warn, and so on. The record's
/// key-value pairs (raft-rs's `raft_id`, `term`, ...) are one field, `raft`.
struct ToTracing;

impl slog::Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<Self::Ok, Self::Err> {
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => Level::ERROR,
            slog::Level::Warning => Level::WARN,
            slog::Level::Info => Level::INFO,
            slog::Level::Debug => Level::DEBUG,
            slog::Level::Trace => Level::TRACE,
        };
        let mut pairs = Pairs::default();
        // Writing into a String does not fail.
        let _ = slog::KV::serialize(&record.kv(), record, &mut pairs);
        let _ = slog::KV::serialize(values, record, &mut pairs);
        let message = record.msg();
        match level {
            Level::ERROR => tracing::error!(target: "raft", raft = %pairs.0, "{message}"),
            Level::WARN => tracing::warn!(target: "raft", raft = %pairs.0, "{message}"),
            Level::INFO => tracing::info!(target: "raft", raft = %pairs.0, "{message}"),
            Level::DEBUG => tracing::debug!(target: "raft", raft = %pairs.0, "{message}"),
            Level::TRACE => tracing::trace!(target: "raft", raft = %pairs.0, "{message}"),
        }
        Ok(())
    }
}

/// `key=value` pairs separated by spaces.
#[derive(Default)]
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_records_reach_tracing_with_their_pairs() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let logger = raft_logger().new(slog::o!("raft_id" => 7));
            slog::warn!(logger, "became leader at term {term}", term = 3);
            tracing::info!(time = 5, count = 2u64, "plain");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert_eq!(parsed[0]["message"], "became leader at term 3");
        assert_eq!(parsed[0]["level"], "warn");
        assert_eq!(parsed[0]["target"], "raft");
        assert_eq!(parsed[0]["raft"], "term=3 raft_id=7");
        assert!(parsed[0]["time"].as_str().unwrap().contains('T'));
        assert_eq!(parsed[1]["message"], "plain");
        assert_eq!(parsed[1]["field.time"], 5);
        assert_eq!(parsed[1]["count"], 2);
        assert!(parsed[1]["time"].is_string());
    }
}
