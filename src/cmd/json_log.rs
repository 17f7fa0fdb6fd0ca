//! The JSON log format (`--log-format json`), written straight into one buffer.
//!
//! The server logs a line per request (SPEC §3), so the formatter is on the request path.
//! tracing-subscriber's JSON formatter writes each line through an adaptor that takes every
//! fragment serde_json produces (a quote, a key, a colon) as bytes, checks them for UTF-8 and
//! writes them to the line one at a time: the admission line took about 4 µs of a request's
//! CPU in `benches/profile.sh`. [`JsonLines`] writes the same line with serde_json into a
//! byte buffer and hands it over once. Events inside a span and events forwarded from the
//! `log` crate, which the stock formatter enriches (span fields, the log record's target),
//! are left to it; the line is the same either way (`same_lines_as_the_stock_formatter`).
use std::fmt::{self, Write as _};

use serde::Serialize;
use tracing::{Event, Subscriber, field::Field};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// The JSON event format; see the module documentation.
#[derive(Debug)]
pub struct JsonLines {
    stock: Format<Json, SystemTime>,
}

impl Default for JsonLines {
    fn default() -> Self {
        Self {
            stock: tracing_subscriber::fmt::format().json(),
        }
    }
}

/// The fields formatter that goes with [`JsonLines`] (the stock formatter's, for spans).
pub type JsonLinesFields = JsonFields;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The same test as the stock formatter's for whether the line names a span.
        let in_span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current())
            .is_some();
        if in_span || event.is_log() {
            return self.stock.format_event(ctx, writer, event);
        }
        let line = line(event).map_err(|_| fmt::Error)?;
        // serde_json writes UTF-8 only; the check is one pass over a few hundred bytes.
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
        writer.write_char('\n')
    }
}

/// `{"timestamp":…,"level":…,"fields":{…},"target":…}`, in the stock formatter's order.
fn line(event: &Event<'_>) -> serde_json::Result<Vec<u8>> {
    let meta = event.metadata();
    // The timestamp is formatted in the scratch space that `Debug` values reuse later.
    let mut stamp = String::with_capacity(64);
    SystemTime
        .format_time(&mut Writer::new(&mut stamp))
        .map_err(serde::ser::Error::custom)?;
    let mut fields = Fields {
        out: Vec::with_capacity(384),
        text: String::new(),
        first: true,
        error: None,
    };
    fields.out.extend_from_slice(b"{\"timestamp\":");
    fields.value(stamp.as_str());
    fields.text = stamp;
    fields.out.extend_from_slice(b",\"level\":");
    fields.value(meta.level().as_str());
    fields.out.extend_from_slice(b",\"fields\":{");
    event.record(&mut fields);
    fields.out.extend_from_slice(b"},\"target\":");
    fields.value(meta.target());
    fields.out.push(b'}');
    match fields.error {
        Some(error) => Err(error),
        None => Ok(fields.out),
    }
}

/// Writes an event's fields as JSON members, the way tracing-serde's map visitor (which the
/// stock formatter uses) writes them: `Debug` and `Display` values as strings, numbers and
/// booleans as such, in the order recorded.
struct Fields {
    out: Vec<u8>,
    /// Scratch space for values formatted with `Debug`.
    text: String,
    first: bool,
    error: Option<serde_json::Error>,
}

impl Fields {
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) {
        if self.error.is_none()
            && let Err(error) = serde_json::to_writer(&mut self.out, value)
        {
            self.error = Some(error);
        }
    }

    fn member<T: Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.value(field.name());
        self.out.push(b':');
        self.value(value);
    }
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        if write!(text, "{value:?}").is_err() {
            self.error = Some(serde::ser::Error::custom("a field's Debug failed"));
        }
        self.member(field, text.as_str());
        self.text = text;
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, &value);
    }
}

#[cfg(test)]
mod tests {
    use tracing::{info, info_span, warn};

    use super::*;
    use crate::{server::logfmt::Escaped, test_log::Lines};

    /// The lines, with the timestamps (which differ between runs) blanked.
    fn blanked(lines: &Lines) -> String {
        lines
            .text()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let stamp = value["timestamp"].as_str().unwrap();
                // RFC 3339 in UTC, to the microsecond.
                assert_eq!(stamp.len(), 27, "{stamp}");
                assert!(stamp.ends_with('Z'), "{stamp}");
                line.replacen(stamp, "T", 1) + "\n"
            })
            .collect()
    }

    fn events() {
        let uid = "7f0\"quote\\ \n\u{1b}[31m größe\u{202e}";
        info!(
            uid = %Escaped(uid),
            kind = %Escaped("VirtualMachine"),
            namespace = "tenant-a",
            operation = "CREATE",
            dry_run = false,
            allowed = true,
            latency_ms = 0.125,
            count = 3u64,
            delta = -4i64,
            big = 1u128 << 100,
            nan = f64::NAN,
            endpoint = "/mutate",
            "admission"
        );
        let error = std::io::Error::other("broken \"pipe\"\tand\nmore");
        warn!(error = %error, debugged = ?("a", 1), "cannot {} {:?}", "write", "x\"y");
        info!(target: "custom::target", "no fields but the message");
        let span = info_span!("request", uid = "u-1", attempt = 2);
        span.in_scope(|| info!(inner = true, "inside a span"));
        info!(parent: &span, "explicit parent");
        // As rustls' `log` records reach the subscriber (LogTracer): the stock formatter
        // names the record's own target.
        let record = tracing_log::log::Record::builder()
            .args(format_args!("from the log crate"))
            .level(tracing_log::log::Level::Warn)
            .target("rustls::server")
            .build();
        tracing_log::format_trace(&record).unwrap();
    }

    /// Every kind of field, escapes, Unicode, a span: our lines equal the stock formatter's
    /// once the timestamps are blanked, byte for byte (so also in field order).
    #[test]
    fn same_lines_as_the_stock_formatter() {
        let ours = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ours.clone())
            .with_ansi(false)
            .fmt_fields(JsonLinesFields::new())
            .event_format(JsonLines::default())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let stock = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(stock.clone())
            .with_ansi(false)
            .json()
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let (ours, stock) = (blanked(&ours), blanked(&stock));
        assert_eq!(ours, stock);
        assert_eq!(ours.lines().count(), 6, "{ours}");
        assert!(ours.contains(r#""target":"rustls::server""#), "{ours}");
        assert!(
            ours.contains(r#""uid":"7f0\"quote\\\\ \\n\\u{1b}[31m größe\\u{202e}""#),
            "{ours}"
        );
        assert!(ours.contains(r#""latency_ms":0.125"#), "{ours}");
        assert!(ours.contains(r#""nan":null"#), "{ours}");
        assert!(
            ours.contains(r#""big":"1267650600228229401496703205376""#),
            "{ours}"
        );
        assert!(ours.contains(r#""spans":[{"#), "{ours}");
    }
}
